-- leave: end a worker session on one queue.
-- KEYS[1] workers   KEYS[2] the session's lease hash   KEYS[3] active   KEYS[4] pending
-- KEYS[5] recovering   KEYS[6] recovered
-- ARGV[1] session id   ARGV[2] wake channel   ARGV[3] epoch (Unix ms)
-- The worker calls it after settling everything it ran, so what the lease hash still
-- holds unstarted was never known to it (a fetch whose reply was lost): it goes back
-- to the front of pending (recovering if counted). A started task still held means
-- a handler that would not stop: then the session stays registered, so that its
-- lease expires and another worker reclaims the task.
-- Returns the number of started tasks still held (0: the session ended).
local P = 2199023255552
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
local leased = redis.call('HGETALL', KEYS[2])
local stranded, back = 0, 0
for i = 1, #leased, 2 do
  local v = leased[i + 1]
  local c = string.find(v, ':', 3, true)
  local slot, id = tonumber(string.sub(v, 3, c - 1)), string.sub(v, c + 1)
  if string.sub(v, 1, 1) == 's' then
    stranded = stranded + 1
  elseif redis.call('HGET', KEYS[3], id) == ARGV[1] .. ':' .. leased[i] then
    if redis.call('HEXISTS', KEYS[6], id) == 1 then
      redis.call('ZADD', KEYS[5], slot * P + now, id)
    else
      redis.call('ZADD', KEYS[4], slot * P, id)
    end
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[2], leased[i])
    back = back + 1
  else
    redis.call('HDEL', KEYS[2], leased[i])
  end
end
if back > 0 then
  redis.call('PUBLISH', ARGV[2], 'q')
end
if stranded == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return stranded
