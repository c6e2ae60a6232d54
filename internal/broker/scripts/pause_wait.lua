-- pause_wait: which live worker sessions have not yet applied the pause ID.
-- KEYS[1] NS:{Q}:paused   KEYS[2] NS:{Q}:pause:acks   KEYS[3] sessions
-- ARGV[1] the pause id
-- A session whose lease deadline has passed is not waited for: its worker
-- starts nothing once its own lease clock runs out, and another worker
-- reclaims what it held. Read-only.
-- Returns {status, session ids...}: status 1 while the pause stands (the ids
-- are those still to acknowledge), 0 if the queue is no longer paused with ID.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {1}
for _, s in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf')) do
  if redis.call('HGET', KEYS[2], s) ~= ARGV[1] then
    out[#out + 1] = s
  end
end
return out
