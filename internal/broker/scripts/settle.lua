-- settle: apply a worker session's outcomes for tasks it holds on one queue.
-- KEYS[1] the session's lease hash   KEYS[2] records   KEYS[3] pending (not read: the
-- lists of a give-back are built from ARGV[6], lib.lua)
-- KEYS[4] scheduled   KEYS[5] dead   KEYS[6] recovered   KEYS[7] recovering
-- KEYS[8] orphaned (see reclaim.lua)
-- ARGV[1] session id   ARGV[2] epoch (Unix ms)   ARGV[3] wake channel
-- ARGV[4] dead max age ms   ARGV[5] dead max entries   ARGV[6] the queue's key prefix
-- NS:{Q}: (for the keys lib.lua builds)
-- then the outcomes, each its kind, token and id, and for some kinds more:
--   a  succeeded: the lease is released and the task finished (lib.lua: with a
--      retention its record and result are kept, else deleted)
--   m  many a: "m TOKEN COUNT ID1 … IDCOUNT" is "a TOKEN ID1 … a TOKEN IDCOUNT"
--      (the acks of one fetch's tasks share its token: two arguments a task less)
--   A  succeeded, then the attempt: "STARTED\0WORKER\0RESULT" (Unix ms the
--      attempt started, the worker's name, the result as msgpack), sent for tasks
--      with a retention or Memoize
--   c  cancelled while it ran (CancelTask): finished as cancelled, not retried (a
--      "c" without a standing cancel request in PRE..cancels is taken as "q"); a request
--      whose value starts with "rediq:" (instead of a time) is the reason kept.
--      C: the same, then the attempt
--   r  failed, to run again: then the delay ms (an integer up to 366 days) and the
--      message; the record becomes message, indexed in scheduled
--   k  failed for good: then the message; the record becomes message, indexed in
--      dead; dead is trimmed by age and size (with the records)
--   q  give back unrun (a stop, a fetch reply that was lost): to the front of its
--      priority in pending (in recovering if it has a recovery count), not an attempt
--   s  mark started: reclaim counts only started tasks as recoveries
--   x  expired: the worker found the task's expiry (its meta's EXPIREAT) passed
--      when it was to start it; finished as expired without running, as fetch
--      does (lib.lua), not an attempt. A task without an expiry in its meta is
--      given back as "q" instead. X: the same, then the attempt
-- A task whose cancellation was requested (PRE..cancels) ends cancelled on r, k,
-- c and x alike.
-- A lease of flag "S" holds a concurrency slot of its flow: the outcome frees it
-- (lib.lua freeSlot), except a start mark. A task that goes to scheduled or
-- recovering keeps its flow in PRE..flow, one given back goes to its lane.
-- Each outcome first checks that the session still holds the lease: its lease hash
-- maps the id to FLAG:TOKEN:SCORE[:FLOW] with this token (reclaim deletes the hash, and a
-- session never reuses a token); if not (it was reclaimed, or this outcome already
-- applied) it changes nothing. Destinations are written before the lease is
-- released, so an error in between leaves a task leased twice, never nowhere.
-- Returns one character per outcome: "1" applied, "0" not held.
local P = 2199023255552
local EXTRA = {a = 0, s = 0, q = 0, A = 1, c = 0, C = 1, x = 0, X = 1, k = 1, r = 2}
local session, pre = ARGV[1], ARGV[6]
-- One EXISTS for all a plain queue lacks (counts of recovered tasks, metas,
-- cancel requests, running counts of limited flows): a queue without any
-- pays one call for them all.
local rare = redis.call('EXISTS', KEYS[6], KEYS[8], pre .. 'meta', pre .. 'cancels', pre .. 'lim:run') > 0
local function exists(key)
  return rare and redis.call('EXISTS', key) == 1
end
local hasRecovered = exists(KEYS[6])
local hasOrphaned = exists(KEYS[8])
local hasMeta = exists(pre .. 'meta')
local hasCancels = exists(pre .. 'cancels')
-- A lease of flag S is counted in PRE..lim:run: without it, none has S.
local hasRun = exists(pre .. 'lim:run')
local sfind, sbyte = string.find, string.byte
local nargv = #ARGV
-- holds answers whether lease value v is held under token tok: it is
-- FLAG:TOKEN:SCORE with this token (an id "" finds the fetch marker,
-- BASE:----, which this never matches).
local function holds(v, tok)
  return sbyte(v, 2) == 58 and sfind(v, tok, 3, true) == 3 and sbyte(v, 3 + #tok) == 58
end
-- ackAll finishes the acked tasks list[first..last] (at most a thousand): their
-- records, the counts and cancel requests they left and their leases go. It
-- answers how many of those leases it released (fewer when an id was acked
-- twice).
local function ackAll(list, first, last)
  redis.call('HDEL', KEYS[2], unpack(list, first, last))
  if hasRecovered then
    redis.call('HDEL', KEYS[6], unpack(list, first, last))
  end
  if hasOrphaned then
    redis.call('HDEL', KEYS[8], unpack(list, first, last))
  end
  if hasCancels then -- a request that came too late: the task succeeded
    redis.call('HDEL', pre .. 'cancels', unpack(list, first, last))
  end
  return redis.call('HDEL', KEYS[1], unpack(list, first, last))
end
-- The common call, on a queue without metas, cancel requests or running
-- counts: plain acks ("a", and runs of them, "m") alone, every lease held.
-- Its leases are read, and its records and leases deleted, straight from
-- ARGV, a run per command: nothing is copied or decided per task but the
-- check of its lease, which for a run's tasks (one fetch's, one lane's) is
-- one string compared to the last. Anything else, a lease not held
-- included, takes the general way below, which checks and answers per
-- outcome.
if (ARGV[7] == 'm' or ARGV[7] == 'a') and not (hasMeta or hasCancels or hasRun) then
  -- runs: per outcome, where its token, first and last id are in ARGV.
  local runs, nr, i = {}, 0, 7
  while i <= nargv do
    local kind, first, last = ARGV[i], i + 2, i + 2
    if kind == 'm' then
      local count = tonumber(ARGV[i + 2])
      if not count or count < 1 or count > 1000 or count % 1 ~= 0 then
        runs = nil -- the general way refuses it
        break
      end
      first, last = i + 3, i + 2 + count
    elseif kind ~= 'a' then
      runs = nil
      break
    end
    if last > nargv then
      runs = nil
      break
    end
    runs[nr + 1], runs[nr + 2], runs[nr + 3] = i + 1, first, last
    nr = nr + 3
    i = last + 1
  end
  for r = 1, runs and nr or 0, 3 do
    local tok = ARGV[runs[r]]
    local vals = redis.call('HMGET', KEYS[1], unpack(ARGV, runs[r + 1], runs[r + 2]))
    local okV
    for k = 1, #vals do
      local v = vals[k]
      if not (v and v == okV) then
        if v and holds(v, tok) then
          okV = v
        else
          runs = nil
          break
        end
      end
    end
    if not runs then
      break
    end
  end
  if runs then
    local n, released = 0, 0
    for r = 1, nr, 3 do
      local first, last = runs[r + 1], runs[r + 2]
      released = released + ackAll(ARGV, first, last)
      n = n + last - first + 1
    end
    if released == n then
      return string.rep('1', n)
    end
    -- An id acked twice (or more): its first ack applied, the others did not.
    local seen, st = {}, {}
    for r = 1, nr, 3 do
      for k = runs[r + 1], runs[r + 2] do
        st[#st + 1] = seen[ARGV[k]] and '0' or '1'
        seen[ARGV[k]] = true
      end
    end
    return table.concat(st)
  end
end
-- Check every outcome before the first write; collect ids and where each
-- outcome starts in ARGV.
local ids, at = {}, {}
local n = 0
local mixed = false -- an outcome other than a or m
local i = 7
-- checkOutcome checks the outcome at ARGV[i] (not m) and answers how many
-- arguments follow its id, or an error reply.
local function checkOutcome(i)
  local kind = ARGV[i]
  local extra = EXTRA[kind]
  if not extra or i + 2 + extra > nargv then
    return nil, redis.error_reply('ERR rediq: bad outcome ' .. tostring(kind) .. ' at argument ' .. i)
  end
  if extra == 0 then
    -- a, s, q, c, x: nothing more to check
  elseif kind == 'r' then
    local delay = tonumber(ARGV[i + 3])
    if not delay or delay < 0 or delay % 1 ~= 0 or delay > 31622400000 then
      return nil, redis.error_reply('ERR rediq: bad outcome r / delay ' .. ARGV[i + 3])
    end
  elseif extra == 1 and kind ~= 'k' then
    -- An attempt is "" or STARTED\0WORKER\0RESULT: anything else would fail
    -- half-way through the call, after some outcomes were written.
    local a = ARGV[i + 3]
    local x = string.find(a, '\0', 1, true)
    if a ~= '' and not (x and string.find(a, '\0', x + 1, true)) then
      return nil, redis.error_reply('ERR rediq: bad outcome ' .. kind .. ' / attempt without its two NULs')
    end
  end
  if ARGV[i + 2] == '' then
    return nil, redis.error_reply('ERR rediq: bad outcome ' .. kind .. ' / empty task id')
  end
  return extra
end
while i <= nargv do
  if ARGV[i] == 'm' then
    local count = tonumber(ARGV[i + 2])
    if not count or count < 1 or count % 1 ~= 0 or i + 2 + count > nargv then
      return redis.error_reply('ERR rediq: bad outcome m / count ' .. tostring(ARGV[i + 2]) .. ' at argument ' .. i)
    end
    for k = i + 3, i + 2 + count do
      if ARGV[k] == '' then
        return redis.error_reply('ERR rediq: bad outcome m / empty task id')
      end
      n = n + 1
      ids[n], at[n] = ARGV[k], i
    end
    i = i + 3 + count
  else
    local extra, bad = checkOutcome(i)
    if bad then
      return bad
    end
    mixed = mixed or ARGV[i] ~= 'a'
    n = n + 1
    ids[n], at[n] = ARGV[i + 2], i
    i = i + 3 + extra
  end
end
-- The server's time (Unix ms, and ms since the epoch), read when first
-- needed: plain acks need none, so a call of only those asks no TIME.
local nowMs, now
local function clock()
  if not nowMs then
    local t = redis.call('TIME')
    nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    now = nowMs - tonumber(ARGV[2])
  end
end
local status = {} -- the outcomes not held, by their place (the others are "1")
local killed, wake = false, false
local firstSched
-- hmget reads fields of a hash, a thousand per HMGET (what unpack takes).
local function hmget(key, fields)
  if #fields <= 1000 then
    return redis.call('HMGET', key, unpack(fields))
  end
  local out = {}
  for from = 1, #fields, 1000 do
    local vals = redis.call('HMGET', key, unpack(fields, from, math.min(from + 999, #fields)))
    for k = 1, #vals do
      out[from + k - 1] = vals[k]
    end
  end
  return out
end
-- The leases of the whole call in one HMGET, the plain acks (the common case)
-- released in one HDEL per hash and the start marks written in one HSET: a
-- call into Redis costs more than the Lua around it. Metas and cancel requests
-- are read likewise, only when the queue has any: a queue of plain tasks pays
-- nothing for them.
local leased = hmget(KEYS[1], ids)
local metas = hasMeta and hmget(pre .. 'meta', ids) or {}
local cancels = hasCancels and hmget(pre .. 'cancels', ids) or {}
local acks, na = {}, 0
local marks, nmarks = {}, 0 -- id -> the lease value marked started
local unheld = 0 -- acks whose lease another ack of this call had released
local function flushAcks()
  if na > 0 then
    unheld = unheld + na - ackAll(acks, 1, na)
    acks, na = {}, 0
  end
end
-- writes gathers what failures write (records, scheduled, dead) and the leases
-- other outcomes release, sent per thousand in one command per key: the
-- destinations first, the leases after, so that an error in between leaves a
-- task leased twice, never nowhere.
local writes = {n = 0, rec = {}, sched = {}, dead = {}, counts = {}, rel = {}, nr = 0}
function writes.flush()
  local w = writes
  if #w.rec > 0 then
    redis.call('HSET', KEYS[2], unpack(w.rec))
  end
  if #w.sched > 0 then
    redis.call('ZADD', KEYS[4], unpack(w.sched))
  end
  if #w.dead > 0 then
    redis.call('ZADD', KEYS[5], unpack(w.dead))
  end
  if #w.counts > 0 then
    if hasRecovered then
      redis.call('HDEL', KEYS[6], unpack(w.counts))
    end
    if hasOrphaned then
      redis.call('HDEL', KEYS[8], unpack(w.counts))
    end
  end
  if w.nr > 0 then
    redis.call('HDEL', KEYS[1], unpack(w.rel, 1, w.nr))
  end
  w.n, w.rec, w.sched, w.dead, w.counts, w.rel, w.nr = 0, {}, {}, {}, {}, {}, 0
end
-- add writes a failed task's record and indexes it in scheduled (score) or
-- dead (when); its counts of dead workers go.
function writes.add(id, msg, score, when)
  local w = writes
  w.rec[#w.rec + 1] = id
  w.rec[#w.rec + 1] = msg
  if score then
    w.sched[#w.sched + 1] = score
    w.sched[#w.sched + 1] = id
  else
    w.dead[#w.dead + 1] = when
    w.dead[#w.dead + 1] = id
  end
  w.counts[#w.counts + 1] = id
  w.n = w.n + 1
end
-- release releases a lease once the destinations are written.
function writes.release(id)
  local w = writes
  w.nr = w.nr + 1
  w.rel[w.nr] = id
  if w.nr >= 1000 or w.n >= 1000 then
    w.flush()
  end
end
-- The concurrency slots the call frees, by flow: freed together at the end
-- (one HINCRBY per flow, not per task).
local frees, nfree = {}, 0
local function freeLater(v, tok)
  local flow = leaseFlow(v, 3 + #tok)
  if flow then
    if not frees[flow] then
      frees[flow] = 0
      nfree = nfree + 1
    end
    frees[flow] = frees[flow] + 1
  end
end
-- ids an earlier outcome of this call released. A call of acks alone (no
-- slot to free) does without: an id acked twice is found by the count of
-- leases the HDEL released (below), and no write differs.
local released = {}
local track = mixed or hasRun
-- The last lease value and token found to match: the tasks of one lane
-- leased by one fetch share their lease value (one string), so a run of
-- their acks checks it once.
local okV, okTok
for j = 1, n do
  local id, i = ids[j], at[j]
  local kind, tok = ARGV[i], ARGV[i + 1]
  local v = leased[j]
  -- Held: the lease value is FLAG:TOKEN:SCORE with this token.
  local held = v and ((v == okV and tok == okTok) or holds(v, tok))
  if held then
    okV, okTok = v, tok
  end
  if not held or released[id] then
    status[j] = '0'
  elseif (kind == 'a' or kind == 'm') and not metas[j] then
    if hasRun and sbyte(v, 1) == 83 then -- 'S': it holds a concurrency slot
      freeLater(v, tok)
    end
    if track then
      released[id] = true
    end
    if nmarks > 0 then
      marks[id] = nil
    end
    na = na + 1
    acks[na] = id
    if na >= 1000 then
      flushAcks()
    end
  elseif kind == 's' then
    if string.byte(v, 1) ~= 83 then -- 'S' is started already
      marks[id] = 's' .. string.sub(v, 2)
      nmarks = nmarks + 1
    end
  else
    released[id] = true
    marks[id] = nil
    local lower = kind == 'm' and 'a' or string.lower(kind)
    if lower == 'r' or lower == 'k' or lower == 'c' or lower == 'x' then
      if cancels[j] then
        lower = 'c'
      elseif lower == 'c' then
        -- The worker heard of a cancel that no longer stands (the task was
        -- requeued or enqueued again since): give it back unrun.
        lower = 'q'
      elseif lower == 'x' and parseMeta(metas[j] or '') == 0 then
        -- No expiry stands (the task was requeued without one): give it back.
        lower = 'q'
      end
    end
    if lower == 'a' or lower == 'c' or lower == 'x' then
      -- A success with a retention, a lock or Memoize, or a cancellation.
      local g, w, r = '', '', ''
      local a = (kind == 'A' or kind == 'C' or kind == 'X') and ARGV[i + 3] or ''
      if a ~= '' then
        local x = string.find(a, '\0', 1, true)
        local y = string.find(a, '\0', x + 1, true)
        g, w, r = string.sub(a, 1, x - 1), string.sub(a, x + 1, y - 1), string.sub(a, y + 1)
      end
      local reason = ''
      if lower == 'x' then
        reason = 'rediq: task expired: its deadline passed before it could run'
      elseif lower == 'c' then
        -- A request may carry its reason instead of a time (a stopped batch).
        reason = 'rediq: task cancelled'
        if cancels[j] and string.sub(cancels[j], 1, 6) == 'rediq:' then
          reason = cancels[j]
        end
      end
      clock()
      finish(pre, id, lower == 'a' and 's' or lower, nowMs, g, w, r, reason)
    else
      -- A malformed score (a foreign worker's) means the default priority.
      clock()
      local slot, flow = leaseParts(v, 3 + #tok)
      if lower == 'r' then
        if flow then
          redis.call('HSET', pre .. 'flow', id, flow)
        end
        local score = (now + tonumber(ARGV[i + 3])) * 4096 + slot
        if not firstSched then
          local f = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
          firstSched = f[2] and tonumber(f[2]) or math.huge
        end
        if score < firstSched then
          firstSched = score
          wake = true
        end
        writes.add(id, ARGV[i + 4], string.format('%d', score), false)
      elseif lower == 'k' then
        writes.add(id, ARGV[i + 3], false, string.format('%d', nowMs))
        if hasMeta or hasCancels then
          died(pre, id)
        end
        killed = true
      else -- 'q'
        if redis.call('HEXISTS', KEYS[6], id) == 1 then
          redis.call('ZADD', KEYS[7], string.format('%d', slot * P + now), id)
          if flow then
            redis.call('HSET', pre .. 'flow', id, flow)
          end
        else
          pend(pre, slot, id, true, flow)
        end
        wake = true
      end
    end
    if string.byte(v, 1) == 83 then -- 'S': it held a concurrency slot
      freeLater(v, tok)
    end
    writes.release(id)
  end
end
writes.flush()
flushAcks()
if unheld > 0 then
  -- An id acked twice (or more): its first ack applied, the others did not.
  local seen = {}
  for j = 1, n do
    if not status[j] then
      if seen[ids[j]] then
        status[j] = '0'
      end
      seen[ids[j]] = true
    end
  end
end
if nfree > 0 then
  for flow, k in pairs(frees) do
    if freeSlot(pre, flow, k) then
      wake = true
    end
  end
end
local m, nm = {}, 0
for id, v in pairs(marks) do
  m[nm + 1] = id
  m[nm + 2] = v
  nm = nm + 2
  if nm >= 2000 then -- a thousand per HSET: what unpack takes
    redis.call('HSET', KEYS[1], unpack(m, 1, nm))
    nm = 0
  end
end
if nm > 0 then
  redis.call('HSET', KEYS[1], unpack(m, 1, nm))
end
if killed then
  clock()
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', nowMs - tonumber(ARGV[4]), 'LIMIT', 0, 1000)
  local excess = redis.call('ZCARD', KEYS[5]) - #old - tonumber(ARGV[5])
  if excess > 0 then
    -- At most a thousand more per call, keeping one call short (and within
    -- what unpack takes); later calls trim the rest.
    old = redis.call('ZRANGE', KEYS[5], 0, #old + math.min(excess, 1000) - 1)
  end
  if #old > 0 then
    redis.call('HDEL', KEYS[2], unpack(old))
    redis.call('ZREM', KEYS[5], unpack(old))
    if hasMeta then
      for _, id in ipairs(old) do
        local _, _, _, lock = parseMeta(redis.call('HGET', pre .. 'meta', id))
        release(pre, id, lock)
      end
      redis.call('HDEL', pre .. 'meta', unpack(old))
    end
  end
end
if wake then
  redis.call('PUBLISH', ARGV[3], 's')
end
if next(status) == nil then
  return string.rep('1', n)
end
for j = 1, n do
  status[j] = status[j] or '1'
end
return table.concat(status)
