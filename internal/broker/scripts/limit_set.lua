-- limit_set: set or clear a task type's limit on one queue.
-- KEYS[1] PRE..limits (hash: TYPE -> "RATE:PER:CONCURRENCY:SOURCE", fetch.lua)
-- ARGV[1] the queue's key prefix PRE   ARGV[2] the type   ARGV[3] the value
-- "RATE:PER:CONCURRENCY:SOURCE" (SOURCE "o" set at run time, "c" declared in
-- code), or "" to clear it   ARGV[4] the wake channel   ARGV[5] the source of a
-- clear ("o" or "c")
-- A value of source "c" (a worker declaring its code's default at start) does
-- not replace one of source "o", and "" with it clears only a code default:
-- what was set at run time stands until it is set again.
-- A change makes the type's blocked lanes fetchable again (fetch decides anew
-- under the new limit) and wakes the idle workers.
-- Returns 1 if the limit changed, else 0.
local pre, typ, v = ARGV[1], ARGV[2], ARGV[3]
local old = redis.call('HGET', KEYS[1], typ)
local code = v == '' and ARGV[5] == 'c' or string.sub(v, -2) == ':c'
if code and old and string.sub(old, -2) == ':o' then
  return 0
end
if (old or '') == v then
  return 0
end
if v == '' then
  redis.call('HDEL', KEYS[1], typ)
else
  redis.call('HSET', KEYS[1], typ, v)
end
for _, s in ipairs(redis.call('ZRANGE', pre .. 'pending:blocked', 0, -1)) do
  local _, flow = laneOf(s)
  flow = flow or ''
  local c = string.find(flow, '|', 1, true)
  if (c and string.sub(flow, 1, c - 1) or flow) == typ then
    unblock(pre, s)
    redis.call('DEL', pre .. 'lim:cwait:' .. flow)
  end
end
redis.call('PUBLISH', ARGV[4], 'p')
return 1
