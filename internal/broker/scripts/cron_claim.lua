-- cron_claim: the first part of cron_fire, which is this and enqueue.lua in one
-- script: a schedule's tick is claimed and its task enqueued in one step, so
-- that no tick fires twice (however many processes fire the schedule, and
-- however often a call is re-sent) and none is claimed without its task.
-- KEYS: enqueue.lua's first four, then NS:{Q}:dead, then the schedule's state NS:{Q}:cron:ID (hash:
-- last = the last tick claimed, Unix ms; task = the id of the last task fired;
-- at = when it was fired; paused = "1" while PauseSchedule holds it)
-- ARGV: enqueue.lua's, with one task, then the tick (Unix ms; "" for
-- TriggerSchedule: fire now, claim nothing) and flags ("s": overlap skip —
-- no new task while the last one waits or runs: it has a record and is not dead)
-- The last two KEYS and ARGV are taken off before enqueue.lua reads its own.
-- Returns enqueue.lua's reply, or "c" the tick (or a later one) was claimed
-- already, "p" the schedule is paused, "s" skipped for overlap (the tick is
-- claimed in both).
local cronState = table.remove(KEYS)
local cronDead = table.remove(KEYS)
local cronFlags = table.remove(ARGV)
local cronTick = table.remove(ARGV)
local cronNow = redis.call('TIME')
cronNow = string.format('%d', tonumber(cronNow[1]) * 1000 + math.floor(tonumber(cronNow[2]) / 1000))
if cronTick ~= '' then
  local st = redis.call('HMGET', cronState, 'last', 'paused', 'task')
  if st[1] and tonumber(st[1]) and tonumber(st[1]) >= tonumber(cronTick) then
    return 'c'
  end
  redis.call('HSET', cronState, 'last', cronTick)
  if st[2] == '1' then
    return 'p'
  end
  if cronFlags == 's' and st[3] and redis.call('HEXISTS', KEYS[1], st[3]) == 1
      and not redis.call('ZSCORE', cronDead, st[3]) then
    redis.call('HSET', cronState, 'skipped', cronTick)
    return 's'
  end
end
redis.call('HSET', cronState, 'task', ARGV[5], 'at', cronNow)
