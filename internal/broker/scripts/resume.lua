-- resume: let a paused queue's tasks start again.
-- KEYS[1] NS:{Q}:paused   KEYS[2] NS:{Q}:pause:acks   KEYS[3] NS:{Q}:pause:ver
-- ARGV[1] wake channel
-- Workers hear "R:ID" on the wake channel (or find it in their heartbeat's
-- reply) and fetch again. Returns 1 if the queue was paused, else 0.
local was = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
if was == 1 then
  redis.call('PUBLISH', ARGV[1], 'R:' .. nextID(KEYS[3]))
end
return was
