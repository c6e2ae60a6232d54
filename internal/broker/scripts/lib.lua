-- lib: functions shared by the scripts that end tasks or put them back
-- (settle, fetch, cancel, delete, reclaim, leave, requeue); prepended to them
-- when they are loaded. PRE is the queue's key prefix NS:{Q}:, passed in ARGV
-- or taken from the pending key NS:{Q}:pending: keys built from it carry the
-- queue's hash tag, so they live in the queue's cluster slot like the keys in
-- KEYS.
--
-- A task's meta (PRE..meta, id -> "EXPIREAT:RETENTION:MEMO:LOCK") exists only
-- for tasks enqueued with an expiry, a retention, Memoize or Unique: EXPIREAT
-- Unix ms (server clock, 0 none), RETENTION and MEMO ms, LOCK "" or
-- "u:DIGEST" (PRE..uniq:DIGEST) or "m:DIGEST" (PRE..mlock:DIGEST).
--
-- Pending: lists of waiting tasks, oldest first, one per lane (below). The zset
-- PRE..pending (id -> slot*2^41 + seq) is where producers of version 2 still
-- put tasks: fetch takes from it first, and the scripts below look in it too.
local FINAL_INDEX = {s = 'succeeded', c = 'cancelled', x = 'expired'}

--
-- A task waiting in scheduled or recovering whose flow is not none has it in
-- the hash PRE..flow (id -> FLOW), so that it goes back to its lane.
--
-- Lanes (protocol version 4): pending is partitioned by priority slot and by
-- flow. A flow is a task type, or a type and a limit key ("TYPE|KEY"): limits
-- (PRE..limits) apply per flow. The lane "SLOT" holds tasks without a flow,
-- "SLOT|FLOW" those of one flow; its list is PRE..pending:LANE. A lane whose
-- list is not empty is in PRE..pending:lanes (fetchable; score SLOT*2^40 + ms
-- since the epoch when it last came or was served, so the lanes of one slot
-- take turns, oldest first) or in PRE..pending:blocked (over its flow's limit:
-- score the ms since the epoch when fetch looks at it again, or CWAIT when it
-- waits for a running task of its flow to end; those lanes are also in the set
-- PRE..lim:cwait:FLOW). Producers of version 3 push to the list PRE..pending:SLOT
-- and list the slot in PRE..pending:slots (member and score SLOT): fetch
-- merges those in by slot, and a version-3 worker, which reads only that zset,
-- never meets a lane of version 4.
local LANE = 1099511627776 -- 2^40
local CWAIT = 2199023255552 -- 2^41: blocked until a concurrency slot frees
local LEASE_P = 2199023255552 -- a lease's SCORE is SLOT * 2^41

-- laneOf parses a lane: its slot (a number, nil if malformed) and flow (nil: none).
local function laneOf(s)
  local b = string.find(s, '|', 1, true)
  if not b then
    return tonumber(s), nil
  end
  return tonumber(string.sub(s, 1, b - 1)), string.sub(s, b + 1)
end

-- laneName is the lane of a slot (a number) and flow (nil: none).
local function laneName(slot, flow)
  local s = string.format('%d', slot)
  if flow then
    return s .. '|' .. flow
  end
  return s
end

-- leaseFlow answers the flow of a lease value FLAG:TOKEN:SCORE[:FLOW] (c: the
-- position of the colon after TOKEN), or nil.
local function leaseFlow(v, c)
  local d = string.find(v, ':', c + 1, true)
  local flow = d and string.sub(v, d + 1)
  if flow == '' then
    return nil
  end
  return flow
end

-- leaseParts parses a lease value FLAG:TOKEN:SCORE[:FLOW] (c: the position of
-- the colon after TOKEN): the task's slot (a malformed score, a foreign
-- worker's, means the default), its flow (nil: none), and whether it holds a
-- concurrency slot of its flow (FLAG "S": started, counted in PRE..lim:run).
local function leaseParts(v, c)
  local d = string.find(v, ':', c + 1, true)
  local slot = math.floor((tonumber(string.sub(v, c + 1, d and d - 1 or -1)) or 2048 * LEASE_P) / LEASE_P)
  if not (slot >= 0 and slot <= 4095) then
    slot = 2048
  end
  return slot, leaseFlow(v, c), string.byte(v, 1) == 83 -- 'S'
end

-- pend puts one task back in pending at priority slot, in its flow's lane (nil:
-- none): at the front of the list (a give-back: it runs next), or at the back.
-- A lane it creates goes first among its slot's: then it answers true.
local function pend(pre, slot, id, front, flow)
  if not (slot >= 0 and slot <= 4095) then -- a foreign worker's lease: the default
    slot = 2048
  end
  local lane = laneName(slot, flow)
  if redis.call(front and 'LPUSH' or 'RPUSH', pre .. 'pending:' .. lane, id) == 1 then
    redis.call('ZADD', pre .. 'pending:lanes', string.format('%d', slot * LANE), lane)
    return true
  end
  return false
end

-- lanes lists every lane with tasks: version 3's slots, the fetchable lanes,
-- then the blocked ones.
local function lanes(pre)
  local all = redis.call('ZRANGE', pre .. 'pending:slots', 0, -1)
  for _, k in ipairs({'pending:lanes', 'pending:blocked'}) do
    for _, s in ipairs(redis.call('ZRANGE', pre .. k, 0, -1)) do
      all[#all + 1] = s
    end
  end
  return all
end

-- laneEmptied takes a lane whose list is now empty out of every index.
local function laneEmptied(pre, s)
  redis.call('ZREM', pre .. 'pending:lanes', s)
  redis.call('ZREM', pre .. 'pending:blocked', s)
  redis.call('ZREM', pre .. 'pending:slots', s)
end

-- unblock makes a blocked lane fetchable again, first among its slot's
-- lanes: false if it was not blocked.
local function unblock(pre, s)
  if redis.call('ZREM', pre .. 'pending:blocked', s) == 0 then
    return false
  end
  redis.call('ZADD', pre .. 'pending:lanes', string.format('%d', (laneOf(s) or 2048) * LANE), s)
  return true
end

-- unwait makes the lanes of flow that wait for a concurrency slot fetchable
-- again: true if there were any.
local function unwait(pre, flow)
  local w = pre .. 'lim:cwait:' .. flow
  local waiting = redis.call('SMEMBERS', w)
  if #waiting == 0 then
    return false
  end
  redis.call('DEL', w)
  local woke = false
  for _, s in ipairs(waiting) do
    if unblock(pre, s) then
      woke = true
    end
  end
  return woke
end

-- freeSlot gives back the concurrency slot a task of flow held (n of them:
-- default 1), and makes its flow's lanes that waited for one fetchable again:
-- true if there were any, or recovered tasks wait (one may have waited for the
-- slot): the caller wakes the idle workers.
local function freeSlot(pre, flow, n)
  local run = pre .. 'lim:run'
  if redis.call('HINCRBY', run, flow, -(n or 1)) <= 0 then
    redis.call('HDEL', run, flow)
  end
  return unwait(pre, flow) or redis.call('EXISTS', pre .. 'recovering') == 1
end

-- unpend takes a task out of pending, wherever it waits: whether it was there.
-- A list is searched from its head (LREM), so this costs in proportion to the
-- tasks ahead of it: cancel and delete use it, never the task's own path.
local function unpend(pre, id)
  if redis.call('ZREM', pre .. 'pending', id) == 1 then
    if redis.call('EXISTS', pre .. 'pending') == 0 then
      redis.call('DEL', pre .. 'seq') -- for producers of version 2 (enqueue.lua)
    end
    return true
  end
  for _, s in ipairs(lanes(pre)) do
    local list = pre .. 'pending:' .. s
    if redis.call('LREM', list, 1, id) == 1 then
      if redis.call('EXISTS', list) == 0 then
        laneEmptied(pre, s)
      end
      return true
    end
  end
  return false
end
local FINAL_COUNT = {c = 'cancelled', x = 'expired'}

local function parseMeta(v)
  -- A malformed meta (written by hand or by a foreign producer) counts as
  -- none: it must not stop the scripts that read it.
  local at, ret, memo, lock = string.match(v or '', '^(%d+):(%d+):(%d+):(.*)$')
  if not at then
    return 0, 0, 0, ''
  end
  return tonumber(at), tonumber(ret), tonumber(memo), lock
end

local function lockKey(pre, lock)
  if string.sub(lock, 1, 2) == 'u:' then
    return pre .. 'uniq:' .. string.sub(lock, 3)
  end
  return pre .. 'mlock:' .. string.sub(lock, 3)
end

-- release deletes the task's lock if the task still holds it.
local function release(pre, id, lock)
  if lock ~= '' then
    local k = lockKey(pre, lock)
    if redis.call('GET', k) == id then
      redis.call('DEL', k)
    end
  end
end

-- prune drops index entries whose retention has ended (at most 100 per call:
-- every write prunes, so the index never grows past what is retained by much).
local function prune(idx, nowMs)
  local old = redis.call('ZRANGEBYSCORE', idx, '-inf', nowMs, 'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('ZREM', idx, unpack(old))
  end
end

-- finish ends a task the caller has taken out of its index or lease: state
-- "s" succeeded, "c" cancelled, "x" expired. With a retention its record, state
-- and times go to PRE..done:ID (a hash that expires after the retention), it is
-- listed in PRE..succeeded/cancelled/expired (score: when its retention ends;
-- the index expires with its last member), and PRE..fin:ID is published for
-- waiters. A success with Memoize caches its result in PRE..memo:DIGEST. The
-- lock is released; the record, meta, counts and cancel request are deleted.
-- info: g started ms, w worker, r result, e reason ('' when unknown).
local function finish(pre, id, state, nowMs, g, w, r, e)
  local _, ret, memo, lock = parseMeta(redis.call('HGET', pre .. 'meta', id))
  if ret > 0 then
    local key = pre .. 'done:' .. id
    redis.call('DEL', key)
    local f = {'m', redis.call('HGET', pre .. 't', id) or '', 's', state, 'f', nowMs, 'd', ret}
    for _, kv in ipairs({{'g', g}, {'w', w}, {'r', r}, {'e', e}}) do
      if kv[2] ~= '' then -- what is unknown is left out
        f[#f + 1] = kv[1]
        f[#f + 1] = kv[2]
      end
    end
    redis.call('HSET', key, unpack(f))
    redis.call('PEXPIRE', key, ret)
    local idx = pre .. FINAL_INDEX[state]
    prune(idx, nowMs)
    redis.call('ZADD', idx, nowMs + ret, id)
    if redis.call('PTTL', idx) < ret then
      redis.call('PEXPIRE', idx, ret)
    end
    redis.call('PUBLISH', pre .. 'fin:' .. id, state)
  end
  if state == 's' and memo > 0 and string.sub(lock, 1, 2) == 'm:' then
    redis.call('SET', pre .. 'memo:' .. string.sub(lock, 3), r, 'PX', memo)
  end
  release(pre, id, lock)
  if FINAL_COUNT[state] then
    redis.call('HINCRBY', pre .. 'stats', FINAL_COUNT[state], 1)
  end
  redis.call('HDEL', pre .. 't', id)
  redis.call('HDEL', pre .. 'meta', id)
  redis.call('HDEL', pre .. 'recovered', id)
  redis.call('HDEL', pre .. 'orphaned', id)
  redis.call('HDEL', pre .. 'cancels', id)
  redis.call('HDEL', pre .. 'flow', id)
end

-- leaseOf finds the worker session whose lease holds the task: its session id,
-- or nil. A task is active exactly when one does: a lease hash
-- NS:{Q}:lease:SESSION maps the id, for a session in NS:{Q}:sessions (few: one
-- per worker process); or, for a worker of the previous lease format, the
-- hash NS:{Q}:active names the session (reclaim.lua).
local function leaseOf(pre, id)
  for _, s in ipairs(redis.call('ZRANGE', pre .. 'sessions', 0, -1)) do
    if redis.call('HEXISTS', pre .. 'lease:' .. s, id) == 1 then
      return s
    end
  end
  local old = redis.call('HGET', pre .. 'active', id)
  if old then
    return string.match(old, '^(.*):[^:]*$') or old
  end
  return nil
end

-- drop deletes what a task that the caller has taken out of its index
-- leaves: its lock (if it holds it), record, meta, counts and cancel request;
-- a task with a retention may have waiters: "d" is published on PRE..fin:ID.
local function drop(pre, id)
  local _, ret, _, lock = parseMeta(redis.call('HGET', pre .. 'meta', id))
  release(pre, id, lock)
  if ret > 0 then
    redis.call('PUBLISH', pre .. 'fin:' .. id, 'd') -- waiters look, and find it gone
  end
  for _, h in ipairs({'t', 'meta', 'recovered', 'orphaned', 'cancels', 'flow'}) do
    redis.call('HDEL', pre .. h, id)
  end
end

-- died tells waiters that a task went to dead (it keeps its record and meta
-- there) and frees a Memoize lock, so that the next Run tries again. A Unique
-- lock stays until its ttl: the dead task may be requeued.
local function died(pre, id)
  local _, ret, _, lock = parseMeta(redis.call('HGET', pre .. 'meta', id))
  if ret > 0 then
    redis.call('PUBLISH', pre .. 'fin:' .. id, 'k')
  end
  if string.sub(lock, 1, 2) == 'm:' then
    release(pre, id, lock)
  end
  redis.call('HDEL', pre .. 'cancels', id)
end

-- recount sets PRE..lim:run to the concurrency slots the live sessions' leases
-- hold (flag S), flow by flow, and makes the lanes of a flow whose count fell
-- fetchable again: what a count that drifted (a worker of version 3 took back
-- a session of version 4 without freeing its slots) comes back to. True if a
-- lane was unblocked.
local function recount(pre)
  local counts = {}
  for _, sess in ipairs(redis.call('ZRANGE', pre .. 'sessions', 0, -1)) do
    local all = redis.call('HGETALL', pre .. 'lease:' .. sess)
    for i = 1, #all, 2 do
      local v = all[i + 1]
      local c = all[i] ~= '' and string.byte(v, 1) == 83 and string.find(v, ':', 3, true)
      local f = c and leaseFlow(v, c)
      if f then
        counts[f] = (counts[f] or 0) + 1
      end
    end
  end
  local run = pre .. 'lim:run'
  local old = redis.call('HGETALL', run)
  local woke = false
  for i = 1, #old, 2 do
    local f, n = old[i], tonumber(old[i + 1]) or 0
    local m = counts[f] or 0
    if m ~= n then
      if m == 0 then
        redis.call('HDEL', run, f)
      else
        redis.call('HSET', run, f, string.format('%d', m))
      end
      if m < n and unwait(pre, f) then
        woke = true
      end
    end
    counts[f] = nil
  end
  for f, m in pairs(counts) do -- held, but not counted
    redis.call('HSET', run, f, string.format('%d', m))
  end
  return woke
end
