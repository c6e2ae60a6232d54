-- reclaim: put every message leased to an expired session back in pending.
-- KEYS[1] workers   KEYS[2] the expired session's lease hash   KEYS[3] pending   KEYS[4] recovered
-- ARGV[1] expired session id   ARGV[2] wake channel
-- Reclaimed messages go to the front of their priority (they were fetched before
-- anything still pending) and are counted in the recovered hash, so that a message
-- that keeps killing its workers can be sent to dead by the next one to fetch it.
-- Deleting the lease hash is the fence: a late ack or settle from the old session
-- finds no token and changes nothing.
-- Returns the number of messages put back, or -1 if the session is not expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) > now then
  return -1
end
local leased = redis.call('HGETALL', KEYS[2])
local add = {}
for i = 2, #leased, 2 do
  local v = leased[i]
  local c = string.find(v, ':', 1, true)
  local m = string.sub(v, c + 1)
  redis.call('HINCRBY', KEYS[4], m, 1)
  add[#add + 1] = tonumber(string.sub(v, 1, c - 1)) * 2199023255552
  add[#add + 1] = m
  if #add >= 1000 then
    redis.call('ZADD', KEYS[3], unpack(add))
    add = {}
  end
end
if #add > 0 then
  redis.call('ZADD', KEYS[3], unpack(add))
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
if #leased > 0 then
  redis.call('PUBLISH', ARGV[2], 'r')
end
return #leased / 2
