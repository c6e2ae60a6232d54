-- schedule: add messages to a queue's scheduled set, to become pending at a due time.
-- KEYS[1] scheduled zset
-- ARGV[1] wake channel    ARGV[2] epoch (Unix ms)
-- then triples: ARGV[3k] delay ms from the server's clock, ARGV[3k+1] priority slot, ARGV[3k+2] message
-- Score = (due - epoch) ms * 4096 + priority slot, so the promoting script knows the
-- priority without decoding the message. Publishes when the earliest due time moved
-- earlier, so idle workers re-arm their timers.
-- Returns the number of messages added.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local earliest = first[2] and tonumber(first[2]) or math.huge
local wake = false
local args = {}
for i = 3, #ARGV, 3 do
  local score = (now + tonumber(ARGV[i])) * 4096 + tonumber(ARGV[i + 1])
  if score < earliest then
    earliest = score
    wake = true
  end
  args[#args + 1] = score
  args[#args + 1] = ARGV[i + 2]
  if #args >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(args))
    args = {}
  end
end
if #args > 0 then
  redis.call('ZADD', KEYS[1], unpack(args))
end
if wake then
  redis.call('PUBLISH', ARGV[1], 's')
end
return (#ARGV - 2) / 3
