-- resume: let a paused queue's tasks start again.
-- KEYS[1] NS:{Q}:paused   KEYS[2] NS:{Q}:pause:acks   KEYS[3] NS:{Q}:pause:ver
-- ARGV[1] wake channel
-- Workers hear "R:ID" on the wake channel (or find it in their heartbeat's
-- reply) and fetch again. Returns 1 if the queue was paused, else 0.
-- Ids are the larger of INCR pause:ver and the server's clock in µs (stored
-- back): they grow even if Redis lost the counter (an old snapshot, a replica
-- that lagged, a deleted namespace) while workers remember a later id.
local function nextID()
  local n = redis.call('INCR', KEYS[3])
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if us > n then
    n = us
    redis.call('SET', KEYS[3], string.format('%d', n))
  end
  return string.format('%d', n)
end
local was = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
if was == 1 then
  redis.call('PUBLISH', ARGV[1], 'R:' .. nextID())
end
return was
