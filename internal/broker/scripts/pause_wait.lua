-- pause_wait: which live worker sessions have not yet applied the pause ID.
-- KEYS[1] NS:{Q}:paused   KEYS[2] NS:{Q}:pause:acks   KEYS[3] sessions
-- KEYS[4] workers: sessions of workers before protocol version 2, which know
-- no pauses: listed while they live, as never acknowledging
-- ARGV[1] the pause id
-- A session whose lease deadline has passed is not waited for: its worker
-- starts nothing once its own lease clock runs out, and another worker
-- reclaims what it held. Read-only.
-- Returns {status, ms, session ids...}: status 1 while the pause stands (the
-- ids are those still to acknowledge, ms the time until the latest of their
-- lease deadlines: each of them acknowledges with its next heartbeat, which
-- comes before that, or stops being waited for), 0 if the queue is no longer
-- paused with ID.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {1, 0}
for k = 3, 4 do
  local live = redis.call('ZRANGEBYSCORE', KEYS[k], '(' .. now, '+inf', 'WITHSCORES')
  for i = 1, #live, 2 do
    local s = live[i]
    if k == 4 or redis.call('HGET', KEYS[2], s) ~= ARGV[1] then
      out[#out + 1] = s
      out[2] = math.max(out[2], tonumber(live[i + 1]) - now)
    end
  end
end
return out
