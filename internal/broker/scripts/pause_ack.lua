-- pause_ack: a worker session says it applied the pause ID: none of the
-- queue's tasks starts on it any more.
-- KEYS[1] NS:{Q}:paused   KEYS[2] NS:{Q}:pause:acks
-- ARGV[1] session id   ARGV[2] the pause id it applied
-- An acknowledgement of a pause that is no longer the queue's is dropped.
-- Returns 1 if recorded, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
