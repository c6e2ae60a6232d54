-- batch_start: may a task of the batch start? KEYS as in batchlib.
-- ARGV[1] task id
-- A batch that is stopped, or a keep-alive batch whose producer's keep-alive
-- key has expired (it is then stopped here), answers "0:REASON"; else the task is
-- noted as started and the answer is "1".
if redis.call('EXISTS', KEYS[1]) == 0 then
  return '0:the batch no longer exists'
end
local reason = redis.call('HGET', KEYS[1], 'stopped')
if not reason and redis.call('HGET', KEYS[1], 'detached') == '0' and redis.call('EXISTS', KEYS[6]) == 0 then
  reason = 'its producer stopped sending keep-alives'
  redis.call('HSET', KEYS[1], 'stopped', reason, 'stopped_at', nowMs())
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'k', 'e', 'l', 'stopped: ' .. reason)
  retire()
end
if reason then
  return '0:' .. reason
end
redis.call('SADD', KEYS[3], ARGV[1])
return '1'
