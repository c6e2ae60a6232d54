-- fetch: promote due scheduled tasks, then lease up to n tasks to a worker session,
-- in one atomic step.
-- KEYS[1] records   KEYS[2] pending: NS:{Q}:pending, the zset of version 2's producers,
-- and the name the lists are built from (lib.lua)   KEYS[3] scheduled   KEYS[4] recovering
-- KEYS[5] recovered (id -> times a worker died running it)   KEYS[6] sessions
-- KEYS[7] the session's lease hash (id -> "FLAG:TOKEN:SCORE"; "" -> the last fetch's token base)
-- KEYS[8] sequence counter (of version 2's producers: deleted when their zset empties)
-- ARGV[1] n   ARGV[2] token base (tokens are base+1 .. base+n)   ARGV[3] session id
-- ARGV[4] lease TTL ms   ARGV[5] wake channel   ARGV[6] epoch (Unix ms)
-- ARGV[7] "1" if the session may take a recovering task (it runs none now)
-- ARGV[8] how many of the leased tasks start at once (marked started, flag "s"; the
-- others are prefetched, flag "p", until the worker marks them with settle.lua)
-- ARGV[9] the queue's key prefix NS:{Q}: (for the keys lib.lua builds)
-- A task taken whose cancellation was requested, or whose expiry (meta) has
-- passed, is finished as cancelled or expired (lib.lua) instead of leased.
-- Returns {status, ms until the earliest scheduled task is due (-1 if none), 1 if
-- recovering still holds tasks after this fetch (else 0), then six per task: token,
-- id, message, recovered count, 1 if marked started, ms until its expiry (its meta's
-- EXPIREAT less the server's now; -1 if none)}: the worker checks the expiry again
-- when the task starts, by its own clock. Status 0: a
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
redis.call('ZADD', KEYS[6], now + epoch + tonumber(ARGV[4]), session)
local n, base = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {0, -1, 0}

-- nextDue fills in the reply's header: when the earliest scheduled task falls
-- due, and whether recovered tasks wait (the worker gives its one slot for a
-- recovered task to the queues that have some, in turn).
local function nextDue()
  local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if nxt[2] then
    out[2] = math.max(math.floor(tonumber(nxt[2]) / 4096) - now, 0)
  end
  out[3] = redis.call('EXISTS', KEYS[4])
end

local hasRecovered = redis.call('EXISTS', KEYS[5]) == 1
local pre = ARGV[9]
local nowMs = now + epoch
local no = 3 -- entries in out

-- reply adds one leased task to the answer: its token, id, message, recovered
-- count, whether it started, and ms until its expiry (-1: none).
local function reply(tok, id, body, started, meta)
  out[no + 1] = tok
  out[no + 2] = id
  out[no + 3] = body or ''
  out[no + 4] = hasRecovered and tonumber(redis.call('HGET', KEYS[5], id) or '0') or 0
  out[no + 5] = started and 1 or 0
  local at = meta and parseMeta(meta) or 0
  out[no + 6] = at > 0 and math.max(at - nowMs, 0) or -1
  no = no + 6
end

-- The lease hash maps each leased id to FLAG:TOKEN:SCORE, and its field ""
-- to the token base of the session's last fetch: this is that fetch again
-- (its reply was lost), so answer what it leased.
-- The value is padded past 64 bytes: Redis then keeps the hash as a hash
-- table, where a lease is found in O(1), not in a listpack scanned entry by
-- entry (hash-max-listpack-value is 64 unless configured otherwise).
local MARK = ARGV[2] .. ':' .. string.rep('-', 64)
if redis.call('HGET', KEYS[7], '') == MARK then
  out[1] = 1
  local all = redis.call('HGETALL', KEYS[7])
  local mine = {}
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local c = all[i] ~= '' and string.find(v, ':', 3, true) -- "" is the marker
    local tok = c and tonumber(string.sub(v, 3, c - 1))
    if tok and tok > base and tok <= base + n then
      mine[#mine + 1] = {tok, all[i], string.sub(v, 1, 1) == 's'}
    end
  end
  table.sort(mine, function(a, b) return a[1] < b[1] end)
  for _, m in ipairs(mine) do
    reply(m[1], m[2], redis.call('HGET', KEYS[1], m[2]), m[3], redis.call('HGET', pre .. 'meta', m[2]))
  end
  nextDue()
  return out
end

local slotsKey = KEYS[2] .. ':slots'
local paused = redis.call('GET', pre .. 'paused')
if paused then
  return {2, tonumber(paused) or 0, 0} -- 0: set by something else than pause.lua
end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now * 4096 + 4095, 'WITHSCORES', 'LIMIT', 0, 500)
local promoted = #due / 2
if promoted > 0 then
  -- Due tasks go to the back of their slots' lists, in the order they fell due.
  local bySlot, rem = {}, {}
  for i = 1, #due, 2 do
    local slot = tonumber(due[i + 1]) % 4096
    local ids = bySlot[slot]
    if not ids then
      ids = {}
      bySlot[slot] = ids
    end
    ids[#ids + 1] = due[i]
    rem[(i + 1) / 2] = due[i]
  end
  for slot, ids in pairs(bySlot) do
    local s = string.format('%d', slot)
    if redis.call('RPUSH', KEYS[2] .. ':' .. s, unpack(ids)) == #ids then
      redis.call('ZADD', slotsKey, s, s)
    end
  end
  redis.call('ZREM', KEYS[3], unpack(rem))
end

-- The tasks taken: ids and their scores (as ZPOPMIN answers them; slot·P for
-- a list's), nt of them. Taken from a list alone, ids is LRANGE's answer.
local ids, scores, nt = {}, {}, 0
-- take adds a ZPOPMIN answer (id, score, id, score, ...).
local function take(r)
  for i = 1, #r, 2 do
    nt = nt + 1
    ids[nt], scores[nt] = r[i], r[i + 1]
  end
end
if ARGV[7] == '1' and n > 0 then
  take(redis.call('ZPOPMIN', KEYS[4], 1))
end
local want = n - nt
if want > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  -- What producers of version 2 put in the zset goes first.
  take(redis.call('ZPOPMIN', KEYS[2], want))
  want = n - nt
  if want > 0 or redis.call('EXISTS', KEYS[2]) == 0 then
    -- Their next enqueue starts the sequence at 0 again, and so knows to wake
    -- the idle workers.
    redis.call('DEL', KEYS[8])
  end
end
-- The lists of the lowest slots first (LRANGE and LTRIM: LPOP takes a count
-- only since Redis 6.2). A list this fetch empties leaves KEYS[2]:slots, so
-- the slots still to read are always the first few.
while want > 0 do
  local slots = redis.call('ZRANGE', slotsKey, 0, 3)
  if #slots == 0 then
    break
  end
  for _, s in ipairs(slots) do
    local list = KEYS[2] .. ':' .. s
    local r = redis.call('LRANGE', list, 0, want - 1)
    local score = string.format('%d', tonumber(s) * P)
    if nt == 0 then
      ids = r
    else
      for i = 1, #r do
        ids[nt + i] = r[i]
      end
    end
    for i = 1, #r do
      scores[nt + i] = score
    end
    nt, want = nt + #r, want - #r
    if want > 0 then
      redis.call('DEL', list)
      redis.call('ZREM', slotsKey, s)
    else
      redis.call('LTRIM', list, #r, -1)
      if redis.call('EXISTS', list) == 0 then
        redis.call('ZREM', slotsKey, s)
      end
      break
    end
  end
end
local hasMeta = nt > 0 and redis.call('EXISTS', pre .. 'meta') == 1
local hasCancels = nt > 0 and redis.call('EXISTS', pre .. 'cancels') == 1
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
local leased = 0
local dropped = 0
-- One HMGET and one HSET per thousand tasks: a call into Redis costs more
-- than the Lua around it. The lease value is built from strings Redis gave
-- (ids, scores) and the token made with %d: a Lua number passed to Redis, or
-- joined to a string, is formatted as a float (%.17g, %.14g), which costs more
-- than the rest of a task's lease.
for from = 1, nt, 1000 do
  local to = math.min(from + 999, nt)
  local bodies = redis.call('HMGET', KEYS[1], unpack(ids, from, to))
  local metas = hasMeta and redis.call('HMGET', pre .. 'meta', unpack(ids, from, to)) or {}
  local cancels = hasCancels and redis.call('HMGET', pre .. 'cancels', unpack(ids, from, to)) or {}
  local lease, nl = {}, 0
  for k = 1, to - from + 1 do
    local id = ids[from + k - 1]
    -- An index entry without a record (deleted meanwhile) is dropped, with
    -- any counts it left, and the answer comes back short: wake the idle
    -- workers below if pending still has tasks.
    if not bodies[k] then
      dropped = dropped + 1
      redis.call('HDEL', KEYS[5], id)
    elseif (metas[k] or cancels[k]) and ended(id, metas[k], cancels[k]) then
      dropped = dropped + 1
    else
      leased = leased + 1
      local started = leased <= startN
      local tok = base + leased
      lease[nl + 1] = id
      lease[nl + 2] = (started and 's:' or 'p:') .. string.format('%d', tok) .. ':' .. scores[from + k - 1]
      nl = nl + 2
      -- The reply's six (reply() above, inline: this is the hot loop).
      out[no + 1] = tok
      out[no + 2] = id
      out[no + 3] = bodies[k]
      out[no + 4] = hasRecovered and tonumber(redis.call('HGET', KEYS[5], id) or '0') or 0
      out[no + 5] = started and 1 or 0
      local at = metas[k] and parseMeta(metas[k]) or 0
      out[no + 6] = at > 0 and math.max(at - nowMs, 0) or -1
      no = no + 6
    end
  end
  if leased > 0 and to == nt then
    -- The marker goes with the last leases. A fetch that leased nothing
    -- needs none: run again, it leases afresh.
    lease[nl + 1] = ''
    lease[nl + 2] = MARK
    nl = nl + 2
  end
  if nl > 0 then
    redis.call('HSET', KEYS[7], unpack(lease, 1, nl))
  end
end
-- Promoted tasks this fetch did not take are news to the other idle workers.
if (promoted > 0 or dropped > 0) and redis.call('EXISTS', slotsKey, KEYS[2]) > 0 then
  redis.call('PUBLISH', ARGV[5], 'p')
end
nextDue()
return out
