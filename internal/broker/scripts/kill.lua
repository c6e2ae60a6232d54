-- kill: settle a leased message by moving it to the dead set, trimmed by age and size.
-- KEYS[1] the session's lease hash   KEYS[2] dead   KEYS[3] recovered
-- ARGV[1] token   ARGV[2] the message with its error   ARGV[3] max age ms   ARGV[4] max entries
-- ARGV[5] the leased message if it has a recovery count to clear, else ""
-- Returns 1, or 0 if the lease was lost (nothing changed).
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[4]) - 1)
if ARGV[5] ~= '' then
  redis.call('HDEL', KEYS[3], ARGV[5])
end
return 1
