-- enqueue: store task records and index each as pending or scheduled, exactly once.
-- KEYS[1] records (hash: id -> message)   KEYS[2] pending: NS:{Q}:pending, the name the
-- pending lists are built from   KEYS[3] scheduled (zset)   KEYS[4] NS:{Q}:seq (not
-- used since protocol version 3; still passed, so that the keys stay as they were)
-- KEYS[5] (optional) the call guard of the producer's lane
-- ARGV[1] wake channel   ARGV[2] call number on the lane (ignored without KEYS[5])
-- ARGV[3] epoch (Unix ms)   ARGV[4] the queue's key prefix NS:{Q}:
-- then five per task: id, lane (the priority slot, priority+2048, then optionally
-- "|FLOW": the task's type, or type and limit key "TYPE|KEY"; lib.lua), delay ms (0: pending now;
-- > 0: scheduled that long after the server's clock), message, and options: "" or
-- "EXPIREIN:RETENTION:MEMO:LOCKTTL:LOCK" (ms; LOCK "" or "u:DIGEST" or "m:DIGEST")
-- A task with options gets its meta (lib.lua): PRE..meta id -> "EXPIREAT:RETENTION:
-- MEMO:LOCK", EXPIREAT = the server's now + EXPIREIN (0: none). LOCK u:DIGEST
-- (Unique) is PRE..uniq:DIGEST, set to the id for LOCKTTL ms if free, else the
-- task is not written ("u", with the holder's id). LOCK m:DIGEST (Memoize): if
-- PRE..memo:DIGEST holds a cached result the task is not written ("m"); if
-- PRE..mlock:DIGEST names a task that still has a record, neither ("u", with that
-- id); else the lock is set to the id for LOCKTTL ms.
-- Pending: the list KEYS[2]:LANE holds the tasks of one lane, oldest first
-- (RPUSH); the zset KEYS[2]:lanes (member LANE, score SLOT*2^40 + ms since the
-- epoch) lists the fetchable lanes whose list is not empty, and fetch takes from
-- the lowest (a lane blocked by its flow's limit is in KEYS[2]:blocked instead,
-- lib.lua: pushing to it changes nothing else). A list is far smaller than a zset entry per task, and pushing and
-- popping cost less than ordering by score. A scheduled task with a flow has it
-- in KEYS[2] minus "pending" .. "flow" (id -> FLOW), for the fetch that promotes it.
-- Scheduled score = (due - epoch) ms * 4096 + slot.
-- Returns a string with one character per task: "1" added, "0" its id already
-- exists (nothing written for it), "u" a lock is held by another task, "m" a
-- memoized result exists; then, for each "u", the holder's id as LENGTH:ID. Run again with the same guard and call number
-- (go-redis re-sends a call whose reply was lost) it writes nothing but the
-- guard's TTL and returns the first run's reply, so that a retry can neither double a task nor report
-- its own first run as a duplicate.
local P = 2199023255552
local LANE = 1099511627776 -- 2^40
local call = ARGV[2]
if #KEYS < 5 then
  call = ''
end
if call ~= '' then
  local prior = redis.call('GET', KEYS[5])
  if prior then
    local c = string.find(prior, ':', 1, true)
    if c and string.sub(prior, 1, c - 1) == call then
      -- A write, so that a WAIT after this call also covers the first run's.
      redis.call('PEXPIRE', KEYS[5], 300000)
      return string.sub(prior, c + 1)
    end
  end
end
local lanesKey = KEYS[2] .. ':lanes'
-- A lease hash keeps its fetch marker under the field "": a task with an
-- empty id would be leased onto it, and lost.
local EMPTY_ID = 'ERR rediq: empty task id'

-- parseLane answers a lane argument's priority slot and where its flow starts
-- in it (nil: no flow), or nil and an error reply.
local function parseLane(lane)
  local slot, at = tonumber(lane), nil -- "SLOT": no flow
  if not slot then
    local digits = string.match(lane, '^(%d+)|.')
    if not digits then
      return nil, redis.error_reply('ERR rediq: lane ' .. lane .. ' is not SLOT or SLOT|FLOW (a flow is not empty)')
    end
    slot, at = tonumber(digits), #digits + 2
  end
  if slot < 0 or slot > 4095 or slot % 1 ~= 0 then
    return nil, redis.error_reply('ERR rediq: priority slot ' .. tostring(slot) .. ' is outside [0, 4095]')
  end
  return slot, at
end

-- pushLane appends n ids to the back of lane's list; a list that was empty
-- puts its lane in the fetchable ones, behind the lanes of its slot there
-- already (the server's time read once per call).
local laneAdded, sinceEpoch = false, nil
local function pushLane(lane, slot, ids, n)
  if redis.call('RPUSH', KEYS[2] .. ':' .. lane, unpack(ids, 1, n)) == n then
    if not sinceEpoch then
      local t = redis.call('TIME')
      sinceEpoch = math.max(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3]), 0) % LANE
    end
    redis.call('ZADD', lanesKey, string.format('%d', slot * LANE + sinceEpoch), lane)
    laneAdded = true
  end
end

-- answer stores the reply under the call's guard, wakes the idle workers if
-- wake, and returns it.
local function answer(out, wake)
  if call ~= '' then
    redis.call('SET', KEYS[5], call .. ':' .. out, 'PX', 300000)
  end
  if wake then
    redis.call('PUBLISH', ARGV[1], 'p')
  end
  return out
end

-- The runs form: ARGV[5] "" and ARGV[6] "runs" (in the other form ARGV[5] is
-- an id, never empty, and ARGV[6] a lane, which starts with a digit), then
-- runs of tasks of one lane, pending now and without options: LANE COUNT
-- then COUNT pairs id, message (three arguments a task less than five per
-- task, and a loop with nothing to decide per task).
if ARGV[5] == '' and ARGV[6] == 'runs' then
  local nargv = #ARGV
  local runs, nruns, total = {}, 0, 0
  local j = 7
  while j <= nargv do
    local lane, count = ARGV[j], tonumber(ARGV[j + 1])
    if not count or count < 1 or count % 1 ~= 0 or j + 1 + 2 * count > nargv then
      return redis.error_reply('ERR rediq: bad run of tasks at argument ' .. j)
    end
    local slot, bad = parseLane(lane)
    if not slot then
      return bad
    end
    for k = j + 2, j + 2 * count, 2 do
      if ARGV[k] == '' then
        return redis.error_reply(EMPTY_ID)
      end
    end
    nruns = nruns + 1
    runs[nruns] = {lane, slot, j + 2, count}
    total = total + count
    j = j + 2 + 2 * count
  end
  local wasEmpty = redis.call('EXISTS', lanesKey, KEYS[2] .. ':slots') == 0
  local skipped = {} -- place -> "0": ids that exist already (the others are "1")
  local pos = 0
  for r = 1, nruns do
    local lane, slot, from, count = runs[r][1], runs[r][2], runs[r][3], runs[r][4]
    -- A thousand per HMGET and HSET: what unpack takes.
    for c0 = 0, count - 1, 1000 do
      local m = math.min(1000, count - c0)
      local a0 = from + 2 * c0
      local push, np = {}, 0
      if total == 1 then -- one task, a single Enqueue: one HSETNX
        if redis.call('HSETNX', KEYS[1], ARGV[a0], ARGV[a0 + 1]) == 1 then
          push[1], np = ARGV[a0], 1
        else
          skipped[1] = '0'
        end
      else
        local ids = {}
        for k = 1, m do
          ids[k] = ARGV[a0 + 2 * k - 2]
        end
        local ex = redis.call('HMGET', KEYS[1], unpack(ids, 1, m))
        local rec, nr = {}, 0
        for k = 1, m do
          if ex[k] then
            skipped[pos + k] = '0'
          else
            local a = a0 + 2 * k - 2
            rec[nr + 1], rec[nr + 2] = ARGV[a], ARGV[a + 1]
            nr = nr + 2
            np = np + 1
            push[np] = ARGV[a]
          end
        end
        if nr > 0 and redis.call('HSET', KEYS[1], unpack(rec, 1, nr)) * 2 < nr then
          -- An id twice in these: HSET kept the last message of each. The
          -- first of each is the task (the others are "0"), with its message.
          local seen = {}
          rec, nr, push, np = {}, 0, {}, 0
          for k = 1, m do
            local id = ids[k]
            if not ex[k] then
              if seen[id] then
                skipped[pos + k] = '0'
              else
                seen[id] = true
                rec[nr + 1], rec[nr + 2] = id, ARGV[a0 + 2 * k - 1]
                nr = nr + 2
                np = np + 1
                push[np] = id
              end
            end
          end
          redis.call('HSET', KEYS[1], unpack(rec, 1, nr))
        end
      end
      if np > 0 then
        pushLane(lane, slot, push, np)
      end
      pos = pos + m
    end
  end
  local out
  if next(skipped) == nil then
    out = string.rep('1', total)
  else
    local st = {}
    for k = 1, total do
      st[k] = skipped[k] or '1'
    end
    out = table.concat(st)
  end
  return answer(out, wasEmpty and laneAdded)
end
-- Check every argument before the first write: an error after it would leave
-- half a call done.
local nowNeeded, npend = false, 0
local pre = ARGV[4]
local withOptions = false
local slots, delays = {}, {} -- by argument index, parsed once
local laneSlots = {} -- lane argument -> its slot: parsed once per lane
local flowAt = {} -- lane argument "SLOT|FLOW" -> where FLOW starts in it
for i = 5, #ARGV, 5 do
  local lane = ARGV[i + 1]
  local slot = laneSlots[lane]
  if not slot then
    local at
    slot, at = parseLane(lane)
    if not slot then
      return at
    end
    laneSlots[lane], flowAt[lane] = slot, at
  end
  local delay = tonumber(ARGV[i + 2])
  slots[i], delays[i] = slot, delay
  if ARGV[i + 4] ~= '' then
    withOptions = true
    nowNeeded = true
  end
  if ARGV[i] == '' then
    return redis.error_reply(EMPTY_ID)
  end
  if not delay or delay < 0 or delay % 1 ~= 0 or delay >= P then
    return redis.error_reply('ERR rediq: delay ' .. ARGV[i + 2] .. ' ms is not a whole number of ms until 2094')
  end
  if ARGV[i + 4] ~= '' then
    local _, _, lockTTL, lock = string.find(ARGV[i + 4], '^%d+:%d+:%d+:(%d+):(.*)$')
    if not lockTTL or (lock ~= '' and (tonumber(lockTTL) < 1 or not string.find(lock, '^[um]:.'))) then
      return redis.error_reply('ERR rediq: task options ' .. ARGV[i + 4] .. ' are malformed')
    end
  end
  if delay > 0 then
    nowNeeded = true
  else
    npend = npend + 1
  end
end
local now, earliest, wakeScheduled = 0, math.huge, false
if nowNeeded then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
  for i = 5, #ARGV, 5 do
    if now + tonumber(ARGV[i + 2]) >= P then
      return redis.error_reply('ERR rediq: delay ' .. ARGV[i + 2] .. ' ms is past 2094')
    end
  end
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  earliest = first[2] and tonumber(first[2]) or math.huge
end
-- A worker only goes idle after finding the queue empty: pushing into a queue
-- without pending slots is what it must hear of (below).
local wasEmpty = npend > 0 and redis.call('EXISTS', lanesKey, KEYS[2] .. ':slots') == 0
-- Counted, not measured with #: the length operator searches the table.
local status, sched, rec = {}, {}, {}
local pend, np = {}, {} -- by lane: the ids to push, and how many
local laneSlot = {} -- lane -> slot
local flowOf, nf = {}, 0 -- scheduled tasks' flows (HSET arguments)
local nsc, nr, ns = 0, 0, 0
local seen = {}
-- Scores go to ZADD (and slots into key names) as strings made with %d: a Lua number passed to Redis is
-- formatted with %.17g, a float conversion that costs more than the ZADD.
local function index(i, id)
  local slot, delay = slots[i], delays[i]
  if delay == 0 then
    local lane = ARGV[i + 1] -- its lane: SLOT or SLOT|FLOW as the producer wrote it
    local n = np[lane]
    if not n then
      pend[lane], n = {}, 0
      laneSlot[lane] = slot
    end
    n = n + 1
    pend[lane][n], np[lane] = id, n
  else
    local at = flowAt[ARGV[i + 1]]
    if at then
      flowOf[nf + 1] = id
      flowOf[nf + 2] = string.sub(ARGV[i + 1], at)
      nf = nf + 2
    end
    local score = (now + delay) * 4096 + slot
    if score < earliest then
      earliest = score
      wakeScheduled = true
    end
    sched[nsc + 1] = string.format('%d', score)
    sched[nsc + 2] = id
    nsc = nsc + 2
  end
end
local added = 0
-- pushAll appends the pending tasks gathered so far to their lanes' lists
-- (pushLane), and keeps the flows of the scheduled ones.
local function pushAll()
  for lane, ids in pairs(pend) do
    local n = np[lane]
    pushLane(lane, laneSlot[lane], ids, n)
    added = added + n
  end
  pend, np = {}, {}
  if nf > 0 then
    redis.call('HSET', pre .. 'flow', unpack(flowOf, 1, nf))
    flowOf, nf = {}, 0
  end
end
local single = #ARGV == 9 and not withOptions
if single then -- one task, the common single Enqueue: one HSETNX
  ns = 1
  if redis.call('HSETNX', KEYS[1], ARGV[5], ARGV[8]) == 1 then
    status[1] = '1'
    index(5, ARGV[5])
  else
    status[1] = '0'
  end
end
local holders = {}
-- options applies a task's options before it is written; false: not written,
-- its status says why.
local function options(i, id)
  local o = ARGV[i + 4]
  if o == '' then
    return true
  end
  if redis.call('EXISTS', pre .. 'done:' .. id) == 1 then
    -- The id's task finished and is retained: enqueueing it again with the
    -- same id stays idempotent for that long.
    ns = ns + 1
    status[ns] = '0'
    return false
  end
  local f = {}
  for part in string.gmatch(o, '([^:]*):') do
    f[#f + 1] = part
    if #f == 4 then
      break
    end
  end
  local expireIn, ret, memo, lockTTL = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
  local lock = string.sub(o, #f[1] + #f[2] + #f[3] + #f[4] + 5)
  local kind, digest = string.sub(lock, 1, 2), string.sub(lock, 3)
  if kind == 'u:' then
    if not redis.call('SET', pre .. 'uniq:' .. digest, id, 'NX', 'PX', lockTTL) then
      ns = ns + 1
      status[ns] = 'u'
      holders[#holders + 1] = redis.call('GET', pre .. 'uniq:' .. digest) or ''
      return false
    end
  elseif kind == 'm:' then
    if redis.call('EXISTS', pre .. 'memo:' .. digest) == 1 then
      ns = ns + 1
      status[ns] = 'm'
      return false
    end
    local holder = redis.call('GET', pre .. 'mlock:' .. digest)
    if holder and (seen[holder] or redis.call('HEXISTS', KEYS[1], holder) == 1) then
      ns = ns + 1
      status[ns] = 'u'
      holders[#holders + 1] = holder
      return false
    end
    redis.call('SET', pre .. 'mlock:' .. digest, id, 'PX', lockTTL)
  end
  local at = 0
  if expireIn > 0 then
    at = now + tonumber(ARGV[3]) + expireIn
  end
  redis.call('HSET', pre .. 'meta', id, at .. ':' .. ret .. ':' .. memo .. ':' .. lock)
  return true
end
-- Which ids exist, in one HMGET per thousand: a call into Redis costs more than
-- the Lua around it.
for from = 5, #ARGV, 5000 do
  if single then
    break
  end
  local ids, ni = {}, 0
  for i = from, math.min(from + 4999, #ARGV), 5 do
    ni = ni + 1
    ids[ni] = ARGV[i]
  end
  local existing = redis.call('HMGET', KEYS[1], unpack(ids))
  for k, id in ipairs(ids) do
    local i = from + (k - 1) * 5
    if existing[k] or seen[id] then
      ns = ns + 1
      status[ns] = '0'
    elseif options(i, id) then
      seen[id] = true
      ns = ns + 1
      status[ns] = '1'
      rec[nr + 1] = id
      rec[nr + 2] = ARGV[i + 3]
      nr = nr + 2
      index(i, id)
    end
  end
  if nr > 0 then
    redis.call('HSET', KEYS[1], unpack(rec, 1, nr))
    rec, nr = {}, 0
  end
  pushAll()
  if nsc > 0 then
    redis.call('ZADD', KEYS[3], unpack(sched, 1, nsc))
    sched, nsc = {}, 0
  end
end
pushAll()
if nsc > 0 then
  redis.call('ZADD', KEYS[3], unpack(sched, 1, nsc))
end
for _, h in ipairs(holders) do
  ns = ns + 1
  status[ns] = #h .. ':' .. h
end
-- A worker only goes idle after emptying the queue, so "was empty" is the only
-- transition it must hear; a new earliest due time re-arms idle workers' timers.
return answer(table.concat(status), (wasEmpty and laneAdded) or wakeScheduled)
