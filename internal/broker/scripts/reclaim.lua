-- reclaim: take back everything leased to a session whose lease expired.
-- KEYS[1] sessions   KEYS[2] the expired session's lease hash   KEYS[3] pending
-- (NS:{Q}:pending: the lists are built from it, lib.lua)
-- KEYS[4] recovering   KEYS[5] recovered   KEYS[6] orphaned
-- KEYS[7] workers, KEYS[8] active: a session registered in KEYS[7] ran the previous
-- lease format (token -> FLAG:SLOT:ID, and active id -> SESSION:TOKEN); its leases
-- are read in that format, each only if active still points at it, and its active
-- entries deleted. Workers of either format can then share a queue during a deploy.
-- ARGV[1] expired session id   ARGV[2] wake channel   ARGV[3] epoch (Unix ms)
-- Tasks not marked started go back uncounted: to the front of their priority in
-- pending, or to recovering if they already carry a recovery count. Workers mark a
-- start without waiting for the mark, so a task that kills its worker within a
-- round trip of starting looks unstarted: orphaned counts those returns, and the
-- second one in a row counts as a recovery (such a task cannot slip through
-- forever; a healthy task that only sat in the prefetch buffer of two dying
-- workers is then merely run on its own). Tasks it had started are counted in
-- recovered and go to recovering, from which a worker takes at most one at a time
-- besides its other tasks: a task that kills its worker is then never again fetched
-- alongside another recovered one, so it alone climbs to the poison limit.
-- Deleting the lease hash is the fence: a late settle from the old session finds
-- no lease and changes nothing.
-- Returns {prefetched put back, started put back}, or {-1, -1} if the session is not
-- expired (another worker got there first, or it came back).
local P = 2199023255552
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local zset = KEYS[1]
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline then
  zset = KEYS[7]
  deadline = redis.call('ZSCORE', KEYS[7], ARGV[1])
end
if not deadline or tonumber(deadline) > now then
  return {-1, -1}
end
local legacy = zset == KEYS[7]
local pre = string.sub(KEYS[3], 1, #KEYS[3] - #'pending')
local leased = redis.call('HGETALL', KEYS[2])
local back, rec = 0, 0
local wake = false
for i = 1, #leased, 2 do
  local id, v = leased[i], leased[i + 1]
  local c = id ~= '' and string.find(v, ':', 3, true)
  local slot, flow, holds
  if c and legacy then -- token -> FLAG:SLOT:ID
    local tok = id
    id = string.sub(v, c + 1)
    slot = tonumber(string.sub(v, 3, c - 1))
    if redis.call('HGET', KEYS[8], id) == ARGV[1] .. ':' .. tok then
      redis.call('HDEL', KEYS[8], id)
    else
      c = nil -- stale: active no longer points at this lease
    end
  elseif c then -- the field "" is the last fetch's token base
    -- A malformed score (a foreign worker's) still brings the task back, at
    -- the default priority.
    slot, flow, holds = leaseParts(v, c)
  end
  if c and slot then
    if holds and freeSlot(pre, flow) then
      wake = true
    end
    if flow then
      -- For recovering (below): a task put back in pending goes to its lane.
      redis.call('HSET', pre .. 'flow', id, flow)
    end
    if string.lower(string.sub(v, 1, 1)) == 's' then
      redis.call('HINCRBY', KEYS[5], id, 1)
      redis.call('ZADD', KEYS[4], slot * P + now - tonumber(ARGV[3]), id)
      rec = rec + 1
    elseif redis.call('HINCRBY', KEYS[6], id, 1) >= 2 then
      redis.call('HDEL', KEYS[6], id)
      redis.call('HINCRBY', KEYS[5], id, 1)
      redis.call('ZADD', KEYS[4], slot * P + now - tonumber(ARGV[3]), id)
      rec = rec + 1
    elseif redis.call('HEXISTS', KEYS[5], id) == 1 then
      redis.call('ZADD', KEYS[4], slot * P + now - tonumber(ARGV[3]), id)
      back = back + 1
    else
      if flow then
        redis.call('HDEL', pre .. 'flow', id)
      end
      pend(pre, slot, id, true, flow)
      back = back + 1
    end
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', zset, ARGV[1])
if back + rec > 0 or wake then
  redis.call('PUBLISH', ARGV[2], 'r')
end
return {back, rec}
