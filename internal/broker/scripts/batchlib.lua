-- batchlib: functions shared by the batch scripts (prepended to them).
-- KEYS[1] info (hash)   KEYS[2] stat (hash)   KEYS[3] started (set of task ids)
-- KEYS[4] ended (set of task ids)   KEYS[5] out (stream)   KEYS[6] alive (string: the producer holds the batch)
-- KEYS[7] tables (set of table names)   KEYS[8] members (set of the ids enqueued in
-- the batch: SADD, so a re-sent count counts nothing twice); a table NAME is the list PRE..tbl:NAME,
-- PRE being KEYS[1] without its "info" suffix; PRE..errors counts the errors tasks
-- died with, PRE..errids keeps a few ids of those tasks per error. All carry the batch's hash tag {b:N}.
local PRE = string.sub(KEYS[1], 1, #KEYS[1] - 4)

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- retire makes every key of the batch expire after its retention: it has
-- completed or stopped, and nothing sweeps.
local function retire()
  local ret = tonumber(redis.call('HGET', KEYS[1], 'retention') or '604800000')
  for i = 1, 8 do
    redis.call('PEXPIRE', KEYS[i], ret)
  end
  redis.call('PEXPIRE', PRE .. 'errors', ret)
  redis.call('PEXPIRE', PRE .. 'errids', ret)
  for _, t in ipairs(redis.call('SMEMBERS', KEYS[7])) do
    redis.call('PEXPIRE', PRE .. 'tbl:' .. t, ret)
  end
end

-- completeIfDone marks the batch completed, once, when no task will be added
-- to it and every task enqueued in it has ended; returns 1 to the one caller
-- that did it. No task will be added once it is sealed (its producer waited
-- or closed it) or, for a detached batch, once its producer's keep-alive key
-- is gone (the producer exited, or dropped or never closed the batch). A
-- batch with an OnComplete gets "oncomplete_pending" until a caller has
-- enqueued it (the callers, the workers' sweep and Wait retry while it is set).
local function completeIfDone()
  local info = redis.call('HMGET', KEYS[1], 'sealed', 'completed', 'stopped', 'detached')
  if info[2] or info[3] then
    return 0
  end
  if info[1] ~= '1' and not (info[4] == '1' and redis.call('EXISTS', KEYS[6]) == 0) then
    return 0
  end
  if redis.call('SCARD', KEYS[4]) < redis.call('SCARD', KEYS[8]) then
    return 0
  end
  redis.call('HSET', KEYS[1], 'sealed', '1', 'completed', nowMs())
  if redis.call('HEXISTS', KEYS[1], 'oncomplete') == 1 then
    redis.call('HSET', KEYS[1], 'oncomplete_pending', '1')
  end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'k', 'e', 'l', 'completed')
  retire()
  return 1
end
