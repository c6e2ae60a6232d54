-- find: read what says where a task is, all at once. Read command by command, a
-- script running in between (a settle) could show a record without its meta, or
-- a record that is in no index any more: one moment of the task, never half of
-- a change.
-- KEYS[1] records   KEYS[2] sessions   KEYS[3] recovered   KEYS[4] meta
-- KEYS[5] pending (the zset of version 2's producers; the lists of version 3 are
-- not searched: a record in no other index, and not leased, is pending)
-- KEYS[6] recovering   KEYS[7] scheduled   KEYS[8] dead
-- KEYS[9] the final record NS:{Q}:done:ID
-- KEYS[10] active: id -> SESSION:TOKEN for workers of the previous lease format
-- ARGV[1] task id   ARGV[2] the prefix of the sessions' lease hashes NS:{Q}:lease:
-- Returns {record, session, recovered, meta, pending, recovering, scheduled, dead,
-- final}: HGET's answers on KEYS[1], KEYS[3], KEYS[4], the worker session whose
-- lease hash holds the id, ZSCORE's on KEYS[5..8] (nil where the id is absent),
-- then HGETALL KEYS[9] (empty if there is none). Writes nothing.
local id = ARGV[1]
local out = {}
out[1] = redis.call('HGET', KEYS[1], id)
out[2] = false
out[3] = redis.call('HGET', KEYS[3], id)
out[4] = redis.call('HGET', KEYS[4], id)
for _, s in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('HEXISTS', ARGV[2] .. s, id) == 1 then
    out[2] = s
    break
  end
end
if not out[2] then
  local old = redis.call('HGET', KEYS[10], id)
  if old then
    out[2] = string.match(old, '^(.*):[^:]*$') or old
  end
end
for i = 5, 8 do
  out[i] = redis.call('ZSCORE', KEYS[i], id)
end
out[9] = redis.call('HGETALL', KEYS[9])
return out
