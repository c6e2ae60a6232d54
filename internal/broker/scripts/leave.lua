-- leave: end a worker session on one queue.
-- KEYS[1] sessions   KEYS[2] the session's lease hash   KEYS[3] pending
-- (NS:{Q}:pending: the lists are built from it, lib.lua)
-- KEYS[4] recovering   KEYS[5] recovered
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
local pre = string.sub(KEYS[3], 1, #KEYS[3] - #'pending')
local leased = redis.call('HGETALL', KEYS[2])
local stranded, back = 0, 0
local wake = false
for i = 1, #leased, 2 do
  local id, v = leased[i], leased[i + 1]
  local c = id ~= '' and string.find(v, ':', 3, true)
  if not c then -- the field "" is the last fetch's token base
  elseif string.lower(string.sub(v, 1, 1)) == 's' then
    stranded = stranded + 1
  else
    local slot, flow, holds = leaseParts(v, c)
    if holds and freeSlot(pre, flow) then
      wake = true
    end
    if redis.call('HEXISTS', KEYS[5], id) == 1 then
      redis.call('ZADD', KEYS[4], slot * P + now, id)
      if flow then
        redis.call('HSET', pre .. 'flow', id, flow)
      end
    else
      pend(pre, slot, id, true, flow)
    end
    redis.call('HDEL', KEYS[2], id)
    back = back + 1
  end
end
if back > 0 or wake then
  redis.call('PUBLISH', ARGV[2], 'q')
end
if stranded == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return stranded
