-- fetch: promote due scheduled messages, then lease up to n pending ones to a worker
-- session in the same atomic step.
-- KEYS[1] pending   KEYS[2] scheduled   KEYS[3] workers (session -> lease deadline)
-- KEYS[4] this session's lease hash (token -> "priority:message")
-- KEYS[5] recovered (message -> times reclaimed from a dead worker)   KEYS[6] sequence counter
-- ARGV[1] n   ARGV[2] token base (tokens are base+1 .. base+n)   ARGV[3] session id
-- ARGV[4] lease TTL ms   ARGV[5] wake channel   ARGV[6] epoch (Unix ms)
-- Returns {status, next due (Unix ms, -1 if none), m1, r1, m2, r2, ...}: the leased
-- messages in order with their recovery counts; status -1 means the session is
-- unknown (its leases were reclaimed) and nothing was fetched.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then
  return {-1, -1}
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[3])

local epoch = tonumber(ARGV[6])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', (now - epoch) * 4096 + 4095, 'WITHSCORES', 'LIMIT', 0, 500)
local promoted = #due / 2
if promoted > 0 then
  local seq = redis.call('INCRBY', KEYS[6], promoted) - promoted
  local add, rem = {}, {}
  for i = 1, #due, 2 do
    seq = seq + 1
    add[#add + 1] = (tonumber(due[i + 1]) % 4096) * 2199023255552 + seq
    add[#add + 1] = due[i]
    rem[#rem + 1] = due[i]
  end
  redis.call('ZADD', KEYS[1], unpack(add))
  redis.call('ZREM', KEYS[2], unpack(rem))
end

local out = {0, -1}
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
if #popped > 0 then
  local base = tonumber(ARGV[2])
  local recovered = redis.call('EXISTS', KEYS[5]) == 1
  local lease = {}
  for i = 1, #popped, 2 do
    local m = popped[i]
    lease[#lease + 1] = base + (i + 1) / 2
    lease[#lease + 1] = math.floor(tonumber(popped[i + 1]) / 2199023255552) .. ':' .. m
    out[#out + 1] = m
    out[#out + 1] = recovered and tonumber(redis.call('HGET', KEYS[5], m) or 0) or 0
    if #lease >= 1000 then
      redis.call('HSET', KEYS[4], unpack(lease))
      lease = {}
    end
  end
  if #lease > 0 then
    redis.call('HSET', KEYS[4], unpack(lease))
  end
end
-- Promoted messages this fetch did not take are news to the other idle workers.
if promoted > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[5], 'p')
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if nxt[2] then
  out[2] = math.floor(tonumber(nxt[2]) / 4096) + epoch
end
return out
