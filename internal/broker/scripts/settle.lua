-- settle: apply a worker session's outcomes for tasks it holds on one queue.
-- KEYS[1] the session's lease hash   KEYS[2] active   KEYS[3] records   KEYS[4] pending
-- KEYS[5] scheduled   KEYS[6] dead   KEYS[7] recovered   KEYS[8] recovering
-- KEYS[9] orphaned (see reclaim.lua)
-- ARGV[1] session id   ARGV[2] epoch (Unix ms)   ARGV[3] wake channel
-- ARGV[4] dead max age ms   ARGV[5] dead max entries   ARGV[6] the queue's key prefix
-- NS:{Q}: (for the keys lib.lua builds)
-- then six per outcome: kind, token, id, delay ms (an integer up to 366 days),
-- message ("" when unused), and the attempt ("" or "STARTED\0WORKER\0RESULT":
-- Unix ms the attempt started, the worker's name, the result as msgpack; sent for
-- tasks with a retention or Memoize); kinds:
--   a  succeeded: the lease is released and the task finished (lib.lua: with a
--      retention its record and result are kept, else deleted)
--   c  cancelled while it ran (CancelTask): finished as cancelled, not retried (a
--      "c" without a standing cancel request in PRE..cancels is taken as "q"); a request
--      whose value starts with "rediq:" (instead of a time) is the reason kept
--   r  failed, to run again after delay ms: the record becomes message, indexed in scheduled
--   k  failed for good: the record becomes message, indexed in dead; dead is trimmed
--      by age and size (with the records)
--   q  give back unrun (a stop, a fetch reply that was lost): to the front of its
--      priority in pending (in recovering if it has a recovery count), not an attempt
--   s  mark started: reclaim counts only started tasks as recoveries
--   x  expired: the worker found the task's expiry (its meta's EXPIREAT) passed
--      when it was to start it; finished as expired without running, as fetch
--      does (lib.lua), not an attempt. A task without an expiry in its meta is
--      given back as "q" instead.
-- A task whose cancellation was requested (PRE..cancels) ends cancelled on r, k,
-- c and x alike.
-- Each outcome first checks that the session still holds the lease (its lease hash
-- maps the token to this id; reclaim deletes the hash, and tokens are never reused
-- by a session); if not (it was reclaimed, or this outcome already applied) it
-- changes nothing. Destinations are written before the lease is released, so an
-- error in between leaves a task leased twice, never nowhere.
-- Returns one character per outcome: "1" applied, "0" not held.
local P = 2199023255552
local session, pre = ARGV[1], ARGV[6]
for i = 7, #ARGV, 6 do
  local kind, delay = ARGV[i], tonumber(ARGV[i + 3])
  if not string.find('arkqscx', kind, 1, true) or #kind ~= 1 or not delay or delay < 0 or delay % 1 ~= 0 or delay > 31622400000 then
    return redis.error_reply('ERR rediq: bad outcome ' .. kind .. ' / delay ' .. ARGV[i + 3])
  end
end
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now = nowMs - tonumber(ARGV[2])
local status = {}
local killed, wake = false, false
local firstSched
local hasRecovered = redis.call('EXISTS', KEYS[7]) == 1
local hasOrphaned = redis.call('EXISTS', KEYS[9]) == 1
local hasMeta = redis.call('EXISTS', pre .. 'meta') == 1
local hasCancels = redis.call('EXISTS', pre .. 'cancels') == 1
-- hmget reads fields of a hash, a thousand per HMGET (what unpack takes).
local function hmget(key, fields)
  local out = {}
  for from = 1, #fields, 1000 do
    local vals = redis.call('HMGET', key, unpack(fields, from, math.min(from + 999, #fields)))
    for k = 1, #vals do
      out[from + k - 1] = vals[k]
    end
  end
  return out
end
-- The leases of the whole call in one HMGET, and the plain acks (the common
-- case) released in one HDEL per hash: a call into Redis costs more than the
-- Lua around it. Metas and cancel requests are read likewise, only when the
-- queue has any: a queue of plain tasks pays nothing for them.
local toks, ids = {}, {}
for i = 7, #ARGV, 6 do
  toks[#toks + 1] = ARGV[i + 1]
  ids[#ids + 1] = ARGV[i + 2]
end
local leased = hmget(KEYS[1], toks)
local metas = hasMeta and hmget(pre .. 'meta', ids) or {}
local cancels = hasCancels and hmget(pre .. 'cancels', ids) or {}
local ackIDs, ackToks = {}, {}
local function flushAcks()
  if #ackIDs > 0 then
    redis.call('HDEL', KEYS[3], unpack(ackIDs))
    if hasRecovered then
      redis.call('HDEL', KEYS[7], unpack(ackIDs))
    end
    if hasOrphaned then
      redis.call('HDEL', KEYS[9], unpack(ackIDs))
    end
    if hasCancels then -- a request that came too late: the task succeeded
      redis.call('HDEL', pre .. 'cancels', unpack(ackIDs))
    end
    redis.call('HDEL', KEYS[1], unpack(ackToks))
    redis.call('HDEL', KEYS[2], unpack(ackIDs))
    ackIDs, ackToks = {}, {}
  end
end
local released = {} -- tokens an earlier outcome of this call released
for n = 1, #toks do
  local i = 7 + (n - 1) * 6
  local kind, tok, id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local v = leased[n]
  local c = v and string.find(v, ':', 3, true)
  if c and string.sub(v, c + 1) == id and not released[tok] and (kind == 'r' or kind == 'k' or kind == 'c' or kind == 'x') then
    local requested = cancels[n] ~= nil and cancels[n] ~= false
    if requested then
      kind = 'c'
    elseif kind == 'c' then
      -- The worker heard of a cancel that no longer stands (the task was
      -- requeued or enqueued again since): give it back unrun.
      kind = 'q'
    elseif kind == 'x' and parseMeta(metas[n] or '') == 0 then
      -- No expiry stands (the task was requeued without one): give it back.
      kind = 'q'
    end
  end
  local special = kind == 'c' or kind == 'x' or (kind == 'a' and (ARGV[i + 5] ~= '' or (metas[n] ~= nil and metas[n] ~= false)))
  if not c or string.sub(v, c + 1) ~= id or released[tok] then
    status[#status + 1] = '0'
  elseif special then
    -- A success with a retention, a lock or Memoize, or a cancellation.
    released[tok] = true
    status[#status + 1] = '1'
    local a = ARGV[i + 5]
    local g, w, r = '', '', ''
    if a ~= '' then
      local x = string.find(a, '\0', 1, true)
      local y = string.find(a, '\0', x + 1, true)
      g, w, r = string.sub(a, 1, x - 1), string.sub(a, x + 1, y - 1), string.sub(a, y + 1)
    end
    local reason = ''
    if kind == 'x' then
      reason = 'rediq: task expired: its deadline passed before it could run'
    elseif kind == 'c' then
      -- A request may carry its reason instead of a time (a stopped batch).
      reason = 'rediq: task cancelled'
      if cancels[n] and string.sub(cancels[n], 1, 6) == 'rediq:' then
        reason = cancels[n]
      end
    end
    local state = kind == 'a' and 's' or kind -- 'c' or 'x'
    finish(pre, id, state, nowMs, g, w, r, reason)
    redis.call('HDEL', KEYS[1], tok)
    redis.call('HDEL', KEYS[2], id)
  elseif kind == 'a' then
    released[tok] = true
    status[#status + 1] = '1'
    ackIDs[#ackIDs + 1] = id
    ackToks[#ackToks + 1] = tok
    if #ackIDs >= 1000 then
      flushAcks()
    end
  else
    status[#status + 1] = '1'
    local slot = tonumber(string.sub(v, 3, c - 1))
    local release = true
    if kind == 'r' then
      local score = (now + tonumber(ARGV[i + 3])) * 4096 + slot
      if not firstSched then
        local f = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
        firstSched = f[2] and tonumber(f[2]) or math.huge
      end
      if score < firstSched then
        firstSched = score
        wake = true
      end
      redis.call('HSET', KEYS[3], id, ARGV[i + 4])
      redis.call('ZADD', KEYS[5], score, id)
      redis.call('HDEL', KEYS[7], id)
      redis.call('HDEL', KEYS[9], id)
    elseif kind == 'k' then
      redis.call('HSET', KEYS[3], id, ARGV[i + 4])
      redis.call('ZADD', KEYS[6], nowMs, id)
      redis.call('HDEL', KEYS[7], id)
      redis.call('HDEL', KEYS[9], id)
      if hasMeta or hasCancels then
        died(pre, id)
      end
      killed = true
    elseif kind == 'q' then
      if redis.call('HEXISTS', KEYS[7], id) == 1 then
        redis.call('ZADD', KEYS[8], slot * P + now, id)
      else
        redis.call('ZADD', KEYS[4], slot * P, id)
      end
      wake = true
    else -- 's'
      redis.call('HSET', KEYS[1], tok, 's' .. string.sub(v, 2))
      release = false
    end
    if release then
      released[tok] = true
      redis.call('HDEL', KEYS[1], tok)
      redis.call('HDEL', KEYS[2], id)
    end
  end
end
flushAcks()
if killed then
  local old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', nowMs - tonumber(ARGV[4]), 'LIMIT', 0, 1000)
  local excess = redis.call('ZCARD', KEYS[6]) - #old - tonumber(ARGV[5])
  if excess > 0 then
    -- At most a thousand more per call, keeping one call short (and within
    -- what unpack takes); later calls trim the rest.
    old = redis.call('ZRANGE', KEYS[6], 0, #old + math.min(excess, 1000) - 1)
  end
  if #old > 0 then
    redis.call('HDEL', KEYS[3], unpack(old))
    redis.call('ZREM', KEYS[6], unpack(old))
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
return table.concat(status)
