-- cancel: cancel a task that has not finished.
-- KEYS[1] records   KEYS[2] pending (lib.lua: the lists and the zset of version 2 are
-- built from ARGV[1])   KEYS[3] scheduled   KEYS[4] recovering   KEYS[5] dead
-- KEYS[6] sequence counter (of version 2's producers)
-- ARGV[1] the queue's key prefix NS:{Q}:   ARGV[2] task id   ARGV[3] wake channel
-- A waiting task (pending, recovering, scheduled, retry) is finished as cancelled
-- at once (lib.lua). An active one gets a cancel request (PRE..cancels, id -> Unix
-- ms) and "c:ID" is published on the wake channel: the worker running it cancels
-- its handler, and whatever outcome it sends ends the task cancelled (settle.lua);
-- a worker that dies meanwhile leaves the request for the next fetch (fetch.lua).
-- Returns "c" cancelled, "a" requested (active), "f" already finished (dead, or a
-- retained final record), "n" no such task. Run twice, the second run answers
-- "f" or "n" (a cancelled task without retention leaves nothing), or "a" again.
local pre, id = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  if redis.call('EXISTS', pre .. 'done:' .. id) == 1 then
    return 'f'
  end
  return 'n'
end
if redis.call('ZSCORE', KEYS[5], id) then
  return 'f'
end
if leaseOf(pre, id) then
  redis.call('HSET', pre .. 'cancels', id, nowMs)
  redis.call('PUBLISH', ARGV[3], 'c:' .. id)
  return 'a'
end
-- Scheduled and recovering first: searching pending costs a list scan.
if redis.call('ZREM', KEYS[3], id) == 0 and redis.call('ZREM', KEYS[4], id) == 0 then
  unpend(pre, id)
end
finish(pre, id, 'c', nowMs, '', '', '', 'rediq: task cancelled')
return 'c'
