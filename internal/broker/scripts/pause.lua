-- pause: stop a queue's tasks from starting, on every worker.
-- KEYS[1] NS:{Q}:paused (string: the pause's id)   KEYS[2] NS:{Q}:pause:acks (hash:
-- session -> the pause id it has applied)   KEYS[3] NS:{Q}:pause:ver (counter: pauses
-- and resumes draw their ids from it, so that a worker told of both in any order
-- keeps the later)
-- ARGV[1] wake channel
-- A queue already paused keeps its id (and the acks given for it). Workers
-- hear "P:ID" on the wake channel (or find it in their heartbeat's reply, or in
-- fetch's answer), stop starting the queue's tasks, give its prefetched ones
-- back unstarted, and then acknowledge with pause_ack.lua.
-- Returns the pause's id.
local id = redis.call('GET', KEYS[1])
if not id or not tonumber(id) then -- a value not set by pause.lua gets an id
  id = nextID(KEYS[3])
  redis.call('SET', KEYS[1], id)
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[1], 'P:' .. id)
return id
