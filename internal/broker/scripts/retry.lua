-- retry: settle a leased message by scheduling its next attempt.
-- KEYS[1] the session's lease hash   KEYS[2] scheduled   KEYS[3] recovered
-- ARGV[1] token   ARGV[2] the updated message   ARGV[3] delay ms   ARGV[4] priority slot
-- ARGV[5] epoch (Unix ms)   ARGV[6] wake channel   ARGV[7] the leased message if it
-- has a recovery count to clear, else ""
-- Returns 1, or 0 if the lease was lost (nothing changed).
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[5])
local score = (now + tonumber(ARGV[3])) * 4096 + tonumber(ARGV[4])
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[2], score, ARGV[2])
if not first[2] or score < tonumber(first[2]) then
  redis.call('PUBLISH', ARGV[6], 's')
end
if ARGV[7] ~= '' then
  redis.call('HDEL', KEYS[3], ARGV[7])
end
return 1
