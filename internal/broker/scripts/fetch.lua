-- fetch: promote due scheduled tasks, then lease up to n tasks to a worker session,
-- in one atomic step.
-- KEYS[1] records   KEYS[2] pending: NS:{Q}:pending, the zset of version 2's producers,
-- and the name the lists are built from (lib.lua)   KEYS[3] scheduled   KEYS[4] recovering
-- KEYS[5] recovered (id -> times a worker died running it)   KEYS[6] sessions
-- KEYS[7] the session's lease hash (id -> "FLAG:TOKEN:SCORE"; "" -> the last fetch's token base)
-- (a lease's TOKEN is its fetch's token base + 1: the leases of one fetch share it)
-- KEYS[8] sequence counter (of version 2's producers: deleted when their zset empties)
-- ARGV[1] n   ARGV[2] token base (the fetch takes tokens base+1 .. base+n; its
-- leases name base+1)   ARGV[3] session id
-- ARGV[4] lease TTL ms   ARGV[5] wake channel   ARGV[6] epoch (Unix ms)
-- ARGV[7] "1" if the session may take a recovering task (it runs none now)
-- ARGV[8] how many of the leased tasks start at once (marked started, flag "s"; the
-- others are prefetched, flag "p", until the worker marks them with settle.lua)
-- ARGV[9] the queue's key prefix NS:{Q}: (for the keys lib.lua builds)
-- A task taken whose cancellation was requested, or whose expiry (meta) has
-- passed, is finished as cancelled or expired (lib.lua) instead of leased.
-- Limits (PRE..limits: TYPE -> "RATE:PER:CONCURRENCY:SOURCE", RATE starts per PER
-- ms and CONCURRENCY running, 0: none) apply per flow (lib.lua) and are decided
-- here: a lane over its flow's limit is blocked (PRE..pending:blocked) until
-- the limit allows, and its tasks stay pending, unattempted. A task of a
-- limited flow is only taken to start at once (within ARGV[8]). Starts are
-- logged per flow in the list PRE..lim:log:FLOW (Unix ms, oldest first): a
-- start is allowed while fewer than RATE were logged in the last PER + PER/40
-- ms (the 2.5% covers the delay between this fetch and the handler's start, so
-- that at most RATE starts fall in any window of PER). Running tasks of a flow
-- with a concurrency limit are counted in PRE..lim:run (FLOW -> n); their lease
-- flag is "S", and whatever ends the lease frees the slot (lib.lua freeSlot).
-- Returns {status, ms until the earliest scheduled task is due or blocked lane is
-- looked at again (-1 if none), flags: 1 if recovering still holds tasks after
-- this fetch, + 2 if lanes of limited flows were passed over for want of a task
-- to start at once (ARGV[8]), + 4 if the fetch stopped looking at lanes before
-- it had n tasks (more may be fetchable), the number of tasks leased, how many
-- of them (the first ones) are marked started, then two per task: id, message;
-- then three per task that is not plain: its place in the answer (1 for the
-- first), recovered count, ms until its expiry (its meta's EXPIREAT less the
-- server's now; -1 if none)}. A plain task was never recovered and has no
-- expiry. Every task's lease token is base+1. The worker
-- checks the expiry again when the task starts, by its own clock. Status 0: a
-- fresh fetch; 1: this fetch (same session and token base) had already run, and the
-- reply repeats what it leased (nothing else changes); -1: the session is unknown (its
-- leases were reclaimed) and nothing was fetched; 2: the queue is paused (pause.lua),
-- with the pause's id in place of the ms until due, and nothing was fetched or promoted.
local P = 2199023255552
local t = redis.call('TIME')
local epoch = tonumber(ARGV[6])
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - epoch
local session = ARGV[3]
if not redis.call('ZSCORE', KEYS[6], session) then
  return {-1, -1, 0}
end
redis.call('ZADD', KEYS[6], string.format('%d', now + epoch + tonumber(ARGV[4])), session)
local n, base = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {0, -1, 0, 0, 0}

local blockedKey = KEYS[2] .. ':blocked'
local legacyKey = KEYS[2] .. ':slots'
local pre = ARGV[9]
-- One EXISTS for all a plain queue lacks: recovered tasks and their counts, a
-- pause, limits, version 3's and version 2's producers, metas, cancel requests. A queue that
-- has none of them pays one call for them all (exists answers false without
-- asking again).
local rare = redis.call('EXISTS', KEYS[5], KEYS[4], pre .. 'paused', pre .. 'limits', legacyKey,
  pre .. 'meta', pre .. 'cancels', KEYS[2]) > 0
local function exists(key)
  return rare and redis.call('EXISTS', key) == 1
end
local limited = exists(pre .. 'limits') -- whether the queue has limits

-- nextDue fills in the reply's header: when the earliest scheduled task falls
-- due or blocked lane is looked at again, and whether recovered tasks wait
-- (the worker gives its one slot for a recovered task to the queues that have
-- some, in turn).
-- head is the first scheduled task (ZRANGE 0 0 WITHSCORES) if it was read
-- after the last change to scheduled; nil: read it.
local function nextDue(head)
  local nxt = head or redis.call('ZRANGE', KEYS[3], '0', '0', 'WITHSCORES')
  if nxt[2] then
    out[2] = math.max(math.floor(tonumber(nxt[2]) / 4096) - now, 0)
  end
  out[3] = exists(KEYS[4]) and 1 or 0 -- made only by putting back what it took
  if limited then
    local b = redis.call('ZRANGEBYSCORE', blockedKey, '-inf', '(' .. string.format('%d', CWAIT), 'WITHSCORES', 'LIMIT', 0, 1)
    if b[2] then
      local ms = math.max(tonumber(b[2]) - now, 0)
      if out[2] < 0 or ms < out[2] then
        out[2] = ms
      end
    end
  end
end

local hasRecovered = exists(KEYS[5])
local nowMs = now + epoch
local no = 5 -- entries in out
local nx, extra = 0, {} -- what tasks that are not plain add at the end

-- noteExtra adds what the k-th leased task needs if it is not plain: its
-- recovered count and its expiry (meta). Called only where either may be.
local function noteExtra(k, id, meta)
  local rec = hasRecovered and tonumber(redis.call('HGET', KEYS[5], id) or '0') or 0
  local at = meta and parseMeta(meta) or 0
  if rec > 0 or at > 0 then
    extra[nx + 1] = k
    extra[nx + 2] = rec
    extra[nx + 3] = at > 0 and math.max(at - nowMs, 0) or -1
    nx = nx + 3
  end
end

-- reply adds the k-th leased task to the answer: its id and message, and
-- what it needs if it is not plain.
local function reply(k, id, body, meta)
  out[no + 1] = id
  out[no + 2] = body or ''
  no = no + 2
  noteExtra(k, id, meta)
end

-- finishReply sets the answer's count of tasks (k) and of started ones, and
-- adds what the tasks that are not plain need.
local function finishReply(k, started)
  out[4], out[5] = k, started
  for i = 1, nx do
    out[no + i] = extra[i]
  end
end

-- The lease hash maps each leased id to FLAG:TOKEN:SCORE, and its field ""
-- to the token base of the session's last fetch: this is that fetch again
-- (its reply was lost), so answer what it leased: the leases whose TOKEN is
-- base+1, started ones first.
-- The value is padded past 64 bytes: Redis then keeps the hash as a hash
-- table, where a lease is found in O(1), not in a listpack scanned entry by
-- entry (hash-max-listpack-value is 64 unless configured otherwise).
local MARK = ARGV[2] .. ':' .. string.rep('-', 64)
if redis.call('HGET', KEYS[7], '') == MARK then
  out[1] = 1
  local all = redis.call('HGETALL', KEYS[7])
  local mine, started = {}, {}
  local stamp = ':' .. string.format('%d', base + 1) .. ':'
  for i = 1, #all, 2 do
    local v = all[i + 1]
    if all[i] ~= '' and string.find(v, stamp, 2, true) == 2 then -- "" is the marker
      if string.lower(string.sub(v, 1, 1)) == 's' then
        started[#started + 1] = all[i]
      else
        mine[#mine + 1] = all[i]
      end
    end
  end
  local ns = #started
  for k, id in ipairs(mine) do
    started[ns + k] = id
  end
  for k, id in ipairs(started) do
    reply(k, id, redis.call('HGET', KEYS[1], id), redis.call('HGET', pre .. 'meta', id))
  end
  finishReply(#started, ns)
  nextDue()
  if limited then
    out[3] = out[3] + 2 -- what it passed over is not known: a runner may look
  end
  return out
end

local lanesKey = KEYS[2] .. ':lanes'
local paused = rare and redis.call('GET', pre .. 'paused')
if paused then
  return {2, tonumber(paused) or 0, 0} -- 0: set by something else than pause.lua
end
local sinceEpoch = math.max(now, 0) % LANE
if limited then
  -- Blocked lanes whose time came are fetchable again (at the front of their slot).
  local back = redis.call('ZRANGEBYSCORE', blockedKey, '-inf', now, 'LIMIT', 0, 100)
  for _, s in ipairs(back) do
    unblock(pre, s)
  end
end
-- The first scheduled task tells whether any is due; if none is, it is also
-- the answer's next due time (nextDue reads it again only after promotion).
local head = redis.call('ZRANGE', KEYS[3], '0', '0', 'WITHSCORES')
local due = {}
if head[2] and tonumber(head[2]) <= now * 4096 + 4095 then
  due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now * 4096 + 4095, 'WITHSCORES', 'LIMIT', 0, 500)
  head = nil
end
local promoted = #due / 2
if promoted > 0 then
  -- Due tasks go to the back of their lanes' lists, in the order they fell due.
  local rem = {}
  for i = 1, #due, 2 do
    rem[(i + 1) / 2] = due[i]
  end
  local flows = {}
  if redis.call('EXISTS', pre .. 'flow') == 1 then
    flows = redis.call('HMGET', pre .. 'flow', unpack(rem))
    redis.call('HDEL', pre .. 'flow', unpack(rem))
  end
  local byLane, order, slotOf = {}, {}, {}
  for i = 1, #due, 2 do
    local k = (i + 1) / 2
    local slot = tonumber(due[i + 1]) % 4096
    local lane = laneName(slot, flows[k] or nil)
    local ids = byLane[lane]
    if not ids then
      ids = {}
      byLane[lane] = ids
      order[#order + 1] = lane
      slotOf[lane] = slot
    end
    ids[#ids + 1] = due[i]
  end
  for _, lane in ipairs(order) do
    local ids = byLane[lane]
    if redis.call('RPUSH', KEYS[2] .. ':' .. lane, unpack(ids)) == #ids then
      redis.call('ZADD', lanesKey, string.format('%d', slotOf[lane] * LANE + sinceEpoch), lane)
    end
  end
  redis.call('ZREM', KEYS[3], unpack(rem))
end

-- limitOf answers the limit of a flow's type: {rate, per ms, concurrency}, or
-- false if it has none.
local limitCache = {}
local function limitOf(flow)
  local b = string.find(flow, '|', 1, true)
  local typ = b and string.sub(flow, 1, b - 1) or flow
  local l = limitCache[typ]
  if l == nil then
    l = false
    local r, per, c = string.match(redis.call('HGET', pre .. 'limits', typ) or '', '^(%d+):(%d+):(%d+)')
    r, per, c = tonumber(r), tonumber(per), tonumber(c)
    if r and ((r > 0 and per > 0) or c > 0) then
      l = {r, per, c}
      if per == 0 then
        l[1] = 0
      end
    end
    limitCache[typ] = l
  end
  return l
end

-- allowance answers how many tasks of flow (limit l) may start now, at most
-- want; when none may, also when to look again (ms since the epoch), or 'c'
-- when a running task must end first.
local function allowance(flow, l, want)
  local a = want
  if l[3] > 0 then
    a = math.min(a, l[3] - tonumber(redis.call('HGET', pre .. 'lim:run', flow) or '0'))
    if a <= 0 then
      return 0, 'c'
    end
  end
  if l[1] > 0 then
    local log = pre .. 'lim:log:' .. flow
    local w = l[2] + math.floor(l[2] / 40)
    local len = redis.call('LLEN', log)
    local free = l[1] - len
    if free < a then
      -- The oldest starts that left the window make room.
      local e = 0
      for _, ts in ipairs(redis.call('LRANGE', log, 0, a - free - 1)) do
        if tonumber(ts) > nowMs - w then
          break
        end
        e = e + 1
      end
      if e > 0 then
        redis.call('LTRIM', log, e, -1)
      end
      free = free + e
      if free <= 0 then
        -- The start whose leaving the window makes room for one more.
        local ts = tonumber(redis.call('LINDEX', log, string.format('%d', len - e - l[1])) or '0') or 0
        return 0, math.max(ts + w - epoch, now + 1)
      end
      a = math.min(a, free)
    end
  end
  return a
end

-- account records k starts of flow (limit l).
local function account(flow, l, k)
  if k <= 0 then
    return
  end
  if l[3] > 0 then
    redis.call('HINCRBY', pre .. 'lim:run', flow, k)
  end
  if l[1] > 0 then
    local log = pre .. 'lim:log:' .. flow
    local ts = {}
    local v = string.format('%d', nowMs)
    for i = 1, k do
      ts[i] = v
    end
    redis.call('RPUSH', log, unpack(ts))
    redis.call('PEXPIRE', log, l[2] + math.floor(l[2] / 40) + 1000)
  end
end

-- block takes a lane out of the fetchable ones until untilMs (ms since the
-- epoch), or until a running task of its flow ends ('c').
local function block(s, flow, untilMs)
  redis.call('ZREM', lanesKey, s)
  if untilMs == 'c' then
    redis.call('ZADD', blockedKey, string.format('%d', CWAIT), s)
    redis.call('SADD', pre .. 'lim:cwait:' .. flow, s)
  else
    redis.call('ZADD', blockedKey, string.format('%d', untilMs), s)
  end
end

-- The tasks taken, nt of them: ids, their scores (as ZPOPMIN answers them;
-- slot·P for a list's), and for a task in a flow's lane its flow and whether it
-- holds a concurrency slot (flows[k], counted[k]; nil for others). Tasks of
-- limited flows (and a recovered one) come first: they are the ones started at
-- once. Taken from a list alone, ids is LRANGE's answer.
local ids, scores, flows, counted, nt = {}, {}, {}, {}, 0
local recoveringHeld = false
local startLeft = tonumber(ARGV[8])
local function add(id, score, flow, c)
  nt = nt + 1
  ids[nt], scores[nt], flows[nt], counted[nt] = id, score, flow, c
end
if ARGV[7] == '1' and n > 0 and exists(KEYS[4]) then
  local r = redis.call('ZPOPMIN', KEYS[4], 1)
  if r[1] then
    local flow = redis.call('HGET', pre .. 'flow', r[1]) or nil
    local l = flow and limited and limitOf(flow)
    local ok = true
    if l then
      ok = startLeft > 0 and allowance(flow, l, 1) > 0
      if ok then
        account(flow, l, 1)
      end
    end
    if ok then
      if flow then
        redis.call('HDEL', pre .. 'flow', r[1])
      end
      add(r[1], r[2], flow, l and l[3] > 0)
      startLeft = startLeft - 1
    else
      -- Its flow's limit: it waits, behind the others of its slot, and the
      -- answer does not ask for another try at once (the next fetch or
      -- heartbeat makes one).
      local slot = math.floor(tonumber(r[2]) / P)
      redis.call('ZADD', KEYS[4], string.format('%d', slot * P + now), r[1])
      recoveringHeld = true
    end
  end
end
local want = n - nt
-- What producers of version 2 put in the zset, and lanes of unlimited flows.
local rest, restScores, restFlows, nr = {}, {}, {}, 0
local restFlow -- the flow of every task in rest, while they come from one lane
if want > 0 and exists(KEYS[2]) then
  -- What producers of version 2 put in the zset goes first.
  local r = redis.call('ZPOPMIN', KEYS[2], want)
  for i = 1, #r, 2 do
    nr = nr + 1
    rest[nr], restScores[nr] = r[i], r[i + 1]
  end
  want = n - nt - nr
  if want > 0 or redis.call('EXISTS', KEYS[2]) == 0 then
    -- Their next enqueue starts the sequence at 0 again, and so knows to wake
    -- the idle workers.
    redis.call('DEL', KEYS[8])
  end
end
-- The lanes in order (LRANGE and LTRIM: LPOP takes a count only since Redis
-- 6.2). A list this fetch empties leaves KEYS[2]:slots; a lane it passes over
-- (its flow's limit, no task to start at once) stays, and pos counts those, so
-- that the lanes still to read are always from pos on. A lane partly taken
-- goes behind the others of its slot at the end (they take turns).
local flags = 0
local pos, looked, skipped, others = 0, 0, 0, false
local lanesRead = false -- the loop read every lane there is
local served = {}
-- addRest adds what a list without limits gave (r, of flow; slot's score).
local function addRest(r, score, flow)
  if nr == 0 then
    -- The common case: one lane's tasks, its flow for them all.
    rest, nr, restFlow = r, #r, flow
    for i = 1, nr do
      restScores[i] = score
    end
    return
  end
  if restFlow then -- a second lane: a flow per task from here on
    for i = 1, nr do
      restFlows[i] = restFlow
    end
    restFlow = nil
  end
  for i = 1, #r do
    nr = nr + 1
    rest[nr], restScores[nr], restFlows[nr] = r[i], score, flow
  end
end
-- takeFrom takes up to cap tasks from the head of lane s's list (LRANGE and
-- LTRIM: LPOP takes a count only since Redis 6.2): the ids, and whether the
-- list still holds tasks (if not, the lane leaves every index).
local function takeFrom(s, cap)
  local list = KEYS[2] .. ':' .. s
  -- One more than it takes: whether the list still holds tasks after.
  local r = redis.call('LRANGE', list, '0', string.format('%d', cap))
  if #r > cap then
    r[cap + 1] = nil
    redis.call('LTRIM', list, string.format('%d', cap), '-1')
    return r, true
  end
  redis.call('DEL', list)
  laneEmptied(pre, s)
  return r, false
end
-- Version 3's producers list their slots in legacyKey: those lists are taken
-- in slot order with the lanes (no flow, no limits). takeLegacy takes from the
-- ones at or below maxSlot.
local hasLegacy = exists(legacyKey)
local function takeLegacy(maxSlot)
  while hasLegacy and want > 0 do
    local head = redis.call('ZRANGE', legacyKey, 0, 0, 'WITHSCORES')
    if not head[1] then
      hasLegacy = false
      return
    end
    local slot = tonumber(head[2]) or 2048
    if slot > maxSlot then
      return
    end
    local r = takeFrom(head[1], want)
    addRest(r, string.format('%d', slot * P), nil)
    want = want - #r
  end
end
while want > 0 do
  if looked >= 256 then
    flags = flags + 4 -- the rest next time: one call stays short
    break
  end
  if skipped >= 1000 then
    break -- all of them wait for a runner (flag 2)
  end
  local ls = redis.call('ZRANGE', lanesKey, string.format('%d', pos), string.format('%d', pos + 3))
  if #ls == 0 then
    lanesRead = true
    break
  end
  others = others or #ls > 1 or pos > 0
  for _, s in ipairs(ls) do
    local slot, flow = laneOf(s)
    slot = slot or 2048
    takeLegacy(slot)
    if want <= 0 then
      break
    end
    local l = limited and flow and limitOf(flow)
    local cap, untilMs = want, nil
    if l then
      if startLeft > 0 then
        cap, untilMs = allowance(flow, l, math.min(want, startLeft))
      else
        cap = 0
        if flags % 4 < 2 then
          flags = flags + 2
        end
      end
    end
    if cap > 0 then
      looked = looked + 1
      local r, left = takeFrom(s, cap)
      local score = string.format('%d', slot * P)
      if left then
        pos = pos + 1
        served[#served + 1] = {s, slot}
      end
      if l and #r > 0 then
        account(flow, l, #r)
        startLeft = startLeft - #r
        for i = 1, #r do
          add(r[i], score, flow, l[3] > 0)
        end
        if served[#served] and served[#served][1] == s then
          -- Still tasks in the lane: if its limit is reached now, it is
          -- blocked at once, so that the answer says when to look again.
          local more, untilMore = allowance(flow, l, 1)
          if more == 0 then
            served[#served] = nil
            pos = pos - 1
            block(s, flow, untilMore)
          elseif flags % 4 < 2 then
            flags = flags + 2 -- the rest waits for a runner
          end
        end
      elseif #r > 0 then
        addRest(r, score, flow)
      end
      want = want - #r
    elseif untilMs then
      looked = looked + 1
      block(s, flow, untilMs)
    else
      pos = pos + 1
      skipped = skipped + 1
    end
    if want <= 0 or looked >= 256 or skipped >= 1000 then
      break
    end
  end
end
-- Version 3's lists below every lane read: all of them once the lanes ran out
-- (not when the loop stopped early: higher lanes still wait).
if lanesRead then
  takeLegacy(4095)
end
if others then
  for _, sv in ipairs(served) do
    -- Behind the last of its slot: a turn of the same ms still goes to another.
    local lo = sv[2] * LANE
    local last = redis.call('ZREVRANGEBYSCORE', lanesKey, lo + LANE - 1, lo, 'WITHSCORES', 'LIMIT', 0, 1)
    local score = lo + sinceEpoch
    if last[1] and last[1] ~= sv[1] and tonumber(last[2]) >= score then
      score = tonumber(last[2]) + 1
    end
    if last[1] ~= sv[1] then
      redis.call('ZADD', lanesKey, 'XX', string.format('%d', math.min(score, lo + LANE - 1)), sv[1])
    end
  end
end
local oneFlow -- the flow of every task taken, if they came from one lane
if nt == 0 then
  ids, scores, flows = rest, restScores, restFlows
  nt, oneFlow = nr, restFlow
else
  for i = 1, nr do
    add(rest[i], restScores[i], restFlow or restFlows[i], nil)
  end
end
local hasMeta = nt > 0 and exists(pre .. 'meta')
local hasCancels = nt > 0 and exists(pre .. 'cancels')
-- ended finishes a taken task that must not run: cancelled, or expired. meta
-- and cancel are its entries (false: none).
local function ended(id, meta, cancel)
  if cancel then
    local reason = 'rediq: task cancelled'
    if string.sub(cancel, 1, 6) == 'rediq:' then -- a request with its reason
      reason = cancel
    end
    finish(pre, id, 'c', nowMs, '', '', '', reason)
    return true
  end
  if meta then
    local at = parseMeta(meta)
    if at > 0 and nowMs >= at then
      finish(pre, id, 'x', nowMs, '', '', '', 'rediq: task expired: its deadline passed before it could run')
      return true
    end
  end
  return false
end
local startN = tonumber(ARGV[8])
-- Tasks of one lane share what their lease value has after TOKEN.
local tail = oneFlow and nt > 0 and (':' .. scores[1] .. ':' .. oneFlow)
local anyCounted = next(counted) ~= nil
local leased = 0
local dropped = 0
local wake = false
-- One HMGET and one HSET per thousand tasks: a call into Redis costs more
-- than the Lua around it. Every lease of this fetch names the same TOKEN,
-- base+1 (made once with %d: a Lua number passed to Redis, or joined to a
-- string, is formatted as a float), so that the tasks of one lane share their
-- whole lease value (tailS if started, tailP if not): a string made per task
-- (a token, a value) cost more than the rest of a task's lease.
local stamp = string.format('%d', base + 1)
local tailS = tail and ('s:' .. stamp .. tail)
local tailP = tail and ('p:' .. stamp .. tail)
-- writeLeases writes the leases lease[1..nl] (id, value pairs), and the
-- fetch marker with the last leases of a fetch that leased any (last): a
-- fetch that leased nothing needs none (run again, it leases afresh).
local function writeLeases(lease, nl, last)
  if last then
    lease[nl + 1] = ''
    lease[nl + 2] = MARK
    nl = nl + 2
  end
  if nl > 0 then
    redis.call('HSET', KEYS[7], unpack(lease, 1, nl))
  end
end
-- The common fetch: one lane's tasks (they share their lease value), at most
-- a thousand, none with a meta, a cancel request, a recovered count or a
-- concurrency slot, every record there. Its answer carries LRANGE's ids and
-- HMGET's messages as they came, as two arrays: nothing is copied per task
-- but into the lease HSET.
local fast = tail and nt <= 1000 and not (hasMeta or hasCancels or hasRecovered or anyCounted)
if fast then
  local bodies = redis.call('HMGET', KEYS[1], unpack(ids, 1, nt))
  local lease, nl = {}, 0
  for k = 1, nt do
    if not bodies[k] then
      fast = false -- deleted meanwhile: the general way drops it
      break
    end
    lease[nl + 1] = ids[k]
    lease[nl + 2] = k <= startN and tailS or tailP
    nl = nl + 2
  end
  if fast then
    writeLeases(lease, nl, true)
    leased = nt
    out[6], out[7] = ids, bodies
  end
end
if not fast then
  for from = 1, nt, 1000 do
    local to = math.min(from + 999, nt)
    local bodies = redis.call('HMGET', KEYS[1], unpack(ids, from, to))
    local metas = hasMeta and redis.call('HMGET', pre .. 'meta', unpack(ids, from, to))
    local cancels = hasCancels and redis.call('HMGET', pre .. 'cancels', unpack(ids, from, to))
    local lease, nl = {}, 0
    for k = 1, to - from + 1 do
      local j = from + k - 1
      local id, body = ids[j], bodies[k]
      local meta = metas and metas[k]
      -- An index entry without a record (deleted meanwhile) is dropped, with
      -- any counts it left, and the answer comes back short: wake the idle
      -- workers below if pending still has tasks.
      local gone = false
      if not body then
        gone = true
        redis.call('HDEL', KEYS[5], id)
      elseif (meta or (cancels and cancels[k])) and ended(id, meta, cancels and cancels[k]) then
        gone = true
      end
      if gone then
        dropped = dropped + 1
        if anyCounted and counted[j] and freeSlot(pre, flows[j]) then
          wake = true
        end
      else
        leased = leased + 1
        local started = leased <= startN
        lease[nl + 1] = id
        if anyCounted and counted[j] then
          lease[nl + 2] = 'S:' .. stamp .. ':' .. scores[j] .. ':' .. flows[j]
        elseif tail then
          lease[nl + 2] = started and tailS or tailP
        else
          local fl = flows[j]
          local flag = started and 's:' or 'p:'
          if fl then
            lease[nl + 2] = flag .. stamp .. ':' .. scores[j] .. ':' .. fl
          else
            lease[nl + 2] = flag .. stamp .. ':' .. scores[j]
          end
        end
        nl = nl + 2
        -- reply() above, inline: this is the hot loop.
        out[no + 1] = id
        out[no + 2] = body
        no = no + 2
        if hasRecovered or meta then
          noteExtra(leased, id, meta)
        end
      end
    end
    writeLeases(lease, nl, leased > 0 and to == nt)
  end
end
finishReply(leased, math.min(leased, startN))
-- Promoted tasks this fetch did not take are news to the other idle workers.
if wake or ((promoted > 0 or dropped > 0) and redis.call('EXISTS', lanesKey, legacyKey, KEYS[2]) > 0) then
  redis.call('PUBLISH', ARGV[5], 'p')
end
nextDue(head)
if recoveringHeld and out[3] % 2 == 1 then
  out[3] = out[3] - 1
end
out[3] = out[3] + flags
return out
