-- batch_seal: no task will be added to the batch any more (its producer waits
-- for it or closes it). KEYS as in batchlib. Returns 1 if this completed the
-- batch (every task had ended already), else 0.
redis.call('HSET', KEYS[1], 'sealed', '1')
return completeIfDone()
