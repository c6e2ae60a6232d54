-- delete: remove a task that no worker holds, whatever its state, with its
-- lock (Unique or Memoize) if it holds it.
-- KEYS[1] records   KEYS[2] pending (lib.lua: the lists and the zset of version 2 are
-- built from ARGV[1])   KEYS[3] scheduled   KEYS[4] recovering   KEYS[5] dead
-- KEYS[6] sequence counter (of version 2's producers)
-- ARGV[1] the queue's key prefix NS:{Q}:   ARGV[2] task id
-- A waiting task with a retention may have waiters: "d" is published on
-- PRE..fin:ID. Returns "d" deleted, "a" active (nothing changed: cancel it), "n" no such task
-- (also what a second run answers).
local pre, id = ARGV[1], ARGV[2]
if leaseOf(pre, id) then
  return 'a'
end
if redis.call('HEXISTS', KEYS[1], id) == 1 then
  -- The zsets first: searching pending costs a list scan.
  if redis.call('ZREM', KEYS[3], id) + redis.call('ZREM', KEYS[4], id) + redis.call('ZREM', KEYS[5], id) == 0 then
    unpend(pre, id)
  end
  drop(pre, id)
  return 'd'
end
if redis.call('DEL', pre .. 'done:' .. id) == 1 then
  for _, st in pairs(FINAL_INDEX) do
    redis.call('ZREM', pre .. st, id)
  end
  return 'd'
end
return 'n'
