-- requeue: give leased messages that never started back to pending (a graceful stop).
-- KEYS[1] the session's lease hash   KEYS[2] pending
-- ARGV[1] wake channel   ARGV[2..] tokens; each message and its priority are read
-- from the lease, so only what the session still holds goes back.
-- They go to the front of their priority, since they were fetched before anything
-- still pending. Not an attempt and not a recovery.
-- Returns the number put back.
local n = 0
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    redis.call('HDEL', KEYS[1], ARGV[i])
    local c = string.find(v, ':', 1, true)
    redis.call('ZADD', KEYS[2], tonumber(string.sub(v, 1, c - 1)) * 2199023255552, string.sub(v, c + 1))
    n = n + 1
  end
end
if n > 0 then
  redis.call('PUBLISH', ARGV[1], 'q')
end
return n
