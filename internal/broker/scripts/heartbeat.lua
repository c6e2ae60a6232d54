-- heartbeat: extend a worker session's leases on one queue and report dead sessions.
-- KEYS[1] sessions (session -> lease deadline, Unix ms)   KEYS[2] the session's lease hash
-- KEYS[3] workers: the sessions of the previous lease format (reclaim.lua), reported
-- too when they expire, so that what they held is taken back
-- KEYS[4] NS:{Q}:paused   KEYS[5] NS:{Q}:pause:ver (pause.lua)
-- KEYS[6] NS:{Q}:window (the queue's run window, SetQueueWindow)
-- (the queue's other keys are built from KEYS[4]'s prefix NS:{Q}:, lib.lua)
-- ARGV[1] session id   ARGV[2] lease TTL ms   ARGV[3] "1" to register a new session
-- Returns {status, ms until another live session's lease runs out (-1 if none),
-- leases the session holds, the queue's pause state ("P:ID" paused, "R:ID" resumed,
-- "" never paused: ids grow, so a worker keeps the latest of what it heard),
-- the queue's run window ("" none), expired session ids...}: a worker that missed the pause's message learns it
-- here. Status -1: this session was
-- reclaimed; its leases are gone and it must not act on them. Times are relative so
-- that a worker whose clock is off by seconds still arms its timers right.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return {-1, -1, 0, '', ''}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
-- The lease hash's field "" is not a lease: the token base of the last fetch.
local out = {0, -1, redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], ''), '', redis.call('GET', KEYS[6]) or ''}
local paused = redis.call('GET', KEYS[4])
if paused then
  out[4] = 'P:' .. paused
else
  local ver = redis.call('GET', KEYS[5])
  if ver then
    out[4] = 'R:' .. ver
  end
end
for _, k in ipairs({KEYS[1], KEYS[3]}) do
  local expired = redis.call('ZRANGEBYSCORE', k, '-inf', now, 'LIMIT', 0, 100)
  for i = 1, #expired do
    out[#out + 1] = expired[i]
  end
  local live = redis.call('ZRANGEBYSCORE', k, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 2)
  for i = 1, #live, 2 do
    if live[i] ~= ARGV[1] then
      local d = tonumber(live[i + 1]) - now
      if out[2] < 0 or d < out[2] then
        out[2] = d
      end
      break
    end
  end
end
-- With concurrency limits in use, the counts of running tasks are checked
-- against the leases (lib.lua recount) at most every 30 s: a count that
-- drifted cannot hold a flow back for longer.
local pre = string.sub(KEYS[4], 1, #KEYS[4] - #'paused')
if redis.call('EXISTS', pre .. 'lim:run') == 1 and redis.call('SET', pre .. 'lim:recount', '1', 'NX', 'PX', 30000) then
  if recount(pre) then
    redis.call('PUBLISH', pre .. 'wake', 'p')
  end
end
return out
