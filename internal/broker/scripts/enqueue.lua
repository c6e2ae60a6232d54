-- enqueue: add messages to a queue's pending set, FIFO within each priority.
-- KEYS[1] pending zset    KEYS[2] sequence counter
-- ARGV[1] wake channel    then pairs: ARGV[2k] priority slot (priority+2048), ARGV[2k+1] message
-- Score = slot * 2^41 + sequence, so lower priority first, then enqueue order.
-- Publishes on the wake channel when the queue was empty: a worker only goes idle
-- after it has emptied the queue, so that transition is the only one it must hear.
-- Returns the number of messages added.
local n = (#ARGV - 1) / 2
local seq = redis.call('INCRBY', KEYS[2], n) - n
local wake = redis.call('EXISTS', KEYS[1]) == 0
local args = {}
for i = 2, #ARGV, 2 do
  seq = seq + 1
  args[#args + 1] = tonumber(ARGV[i]) * 2199023255552 + seq
  args[#args + 1] = ARGV[i + 1]
  if #args >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(args))
    args = {}
  end
end
if #args > 0 then
  redis.call('ZADD', KEYS[1], unpack(args))
end
if wake then
  redis.call('PUBLISH', ARGV[1], 'p')
end
return n
