-- leave: end a worker session that holds no more leases on this queue.
-- KEYS[1] workers   KEYS[2] the session's lease hash
-- ARGV[1] session id
-- A session still holding leases (a handler that would not stop) stays registered,
-- so its leases expire and another worker reclaims them.
-- Returns 1 if the session ended, 0 if it still holds leases.
if redis.call('HLEN', KEYS[2]) > 0 then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
