-- batch_complete: complete the batch if no task will be added to it (sealed,
-- or detached and its producer's keep-alive key gone) and every task of it
-- has ended; run by the workers' sweep and by Wait, for a batch whose last
-- end was counted while its producer still held it. KEYS as in batchlib.
-- Returns 1 if this call completed the batch (the caller enqueues its
-- OnComplete), else 0 (also for a batch that no longer exists).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return completeIfDone()
