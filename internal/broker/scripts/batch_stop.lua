-- batch_stop: stop a batch: no task of it starts any more, running ones are
-- cancelled by their workers. KEYS as in batchlib. ARGV[1] reason.
-- Returns 1 if this call stopped it, 0 if it was stopped or completed already.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local info = redis.call('HMGET', KEYS[1], 'stopped', 'completed')
if info[1] or info[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'stopped', ARGV[1], 'stopped_at', nowMs())
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'k', 'e', 'l', 'stopped: ' .. ARGV[1])
retire()
return 1
