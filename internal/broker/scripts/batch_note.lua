-- batch_note: count an attempt and, for a task that ended, its end. KEYS as in batchlib.
-- ARGV[1] task id   ARGV[2] worker name   ARGV[3] attempt: "x" ran and succeeded,
-- "f" ran and failed, "" none   ARGV[4] end: "succeeded", "failed" (dead),
-- "cancelled" (while it ran), "dropped" (cancelled before it started) — the two
-- are told apart here, by the started set —, "unstarted" (dropped after
-- batch_start noted it, on its first attempt: taken out of the started set and
-- counted dropped), or ""
-- (not ended: a retry follows)   ARGV[5] for a "failed" end, its last error: counted in
-- PRE..errors (hash: error text -> tasks that died with it), and the task's id kept
-- in PRE..errids (hash: error text -> JSON array of the first ERRIDS ids)
-- Nothing is written for a batch that no longer exists. The end is counted once per task (the ended set), so a re-sent call does not
-- count it twice; attempts are counted per call. Returns 1 if this call
-- completed the batch (the caller enqueues its OnComplete), else 0.
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'x:' .. ARGV[2], 1)
  if ARGV[3] == 'f' then
    redis.call('HINCRBY', KEYS[2], 'f:' .. ARGV[2], 1)
  end
end
local e = ARGV[4]
if e ~= '' and redis.call('EXISTS', KEYS[1]) == 1 and redis.call('SADD', KEYS[4], ARGV[1]) == 1 then
  -- A cancelled end is "cancelled" if the task ever started, else "dropped",
  -- whatever the caller saw: a task cancelled while it waited for a retry
  -- had run, one whose worker found its batch stopped at start had not.
  -- "unstarted": dropped after batch_start noted it, before its handler ever
  -- ran (its first attempt): it never started.
  if e == 'unstarted' then
    redis.call('SREM', KEYS[3], ARGV[1])
    e = 'dropped'
  end
  if e == 'cancelled' or e == 'dropped' then
    e = redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 and 'cancelled' or 'dropped'
  end
  redis.call('HINCRBY', KEYS[2], e, 1)
  if e == 'failed' and ARGV[5] and ARGV[5] ~= '' then
    redis.call('HINCRBY', PRE .. 'errors', ARGV[5], 1)
    -- A few ids per error, so that one can look at a task that died of it;
    -- capped, as a batch may lose thousands to one error.
    local errids = PRE .. 'errids'
    local ids = cjson.decode(redis.call('HGET', errids, ARGV[5]) or '[]')
    if #ids < 10 then
      table.insert(ids, ARGV[1])
      redis.call('HSET', errids, ARGV[5], cjson.encode(ids))
    end
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then -- the batch has ended (stopped): its keys expire together
      redis.call('PEXPIRE', PRE .. 'errors', ttl)
      redis.call('PEXPIRE', errids, ttl)
    end
  end
  return completeIfDone()
end
return 0
