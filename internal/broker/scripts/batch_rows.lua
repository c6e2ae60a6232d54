-- batch_rows: append rows to a batch table. KEYS as in batchlib.
-- ARGV[1] table name   ARGV[2] worker name   then the rows (msgpack)
-- Nothing is written for a batch that no longer exists (returns -1). A batch
-- that has ended (its keys expire) gives the keys this call may create the
-- same time to live. Returns the number of rows added.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local tbl = PRE .. 'tbl:' .. ARGV[1]
redis.call('SADD', KEYS[7], ARGV[1])
redis.call('RPUSH', tbl, unpack(ARGV, 3))
local n = #ARGV - 2
redis.call('HINCRBY', KEYS[2], 'rows', n)
redis.call('HINCRBY', KEYS[2], 'c:' .. ARGV[2], n)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  for _, k in ipairs({tbl, KEYS[7], KEYS[2]}) do
    redis.call('PEXPIRE', k, ttl)
  end
end
return n
