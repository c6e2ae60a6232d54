-- purge: delete a queue's tasks in one state, a page at a time.
-- KEYS[1] pending (NS:{Q}:pending: the lists are built from it, and it is also
-- version 2's zset)   KEYS[2] recovering   KEYS[3] the index of ARGV[2] "z" or "f"
-- (scheduled, dead, or a finished index succeeded/cancelled/expired)
-- ARGV[1] the queue's key prefix NS:{Q}:   ARGV[2] mode   then:
--   "p" ARGV[3] n: take up to n waiting tasks (recovering, then version 2's zset,
--       then the lanes' lists, fetchable then blocked) and delete them (lib.lua drop)
--   "z" id score pairs: delete each id that KEYS[3] still holds at that score
--       (ZREM), with what it leaves: a task that moved meanwhile (a scheduled
--       one that ran and failed is back as a retry, at another score) stays
--   "f" id score pairs: delete each id's final record (NS:{Q}:done:ID) and its
--       entry in KEYS[3], if the entry still has that score
-- A task a worker holds is in none of these: purge never touches it.
-- Returns a flat array: for "p" and "z", each id deleted and its record (the
-- caller counts tasks of a batch as dropped); for "f", each id deleted and "".
local pre, mode = ARGV[1], ARGV[2]
local out = {}
local function gone(id, body)
  out[#out + 1] = id
  out[#out + 1] = body or ''
end
if mode == 'p' then
  local want = tonumber(ARGV[3])
  local ids = {}
  for _, key in ipairs({KEYS[2], KEYS[1]}) do
    if want > #ids and redis.call('EXISTS', key) == 1 then
      local r = redis.call('ZPOPMIN', key, want - #ids)
      for i = 1, #r, 2 do
        ids[#ids + 1] = r[i]
      end
    end
  end
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', pre .. 'seq') -- version 2's producers (enqueue.lua)
  end
  local slots = KEYS[1] .. ':slots'
  while want > #ids do
    local s = redis.call('ZRANGE', slots, 0, 0)[1] or redis.call('ZRANGE', KEYS[1] .. ':lanes', 0, 0)[1] or
        redis.call('ZRANGE', KEYS[1] .. ':blocked', 0, 0)[1]
    if not s then
      break
    end
    local list = KEYS[1] .. ':' .. s
    local r = redis.call('LRANGE', list, 0, want - #ids - 1)
    redis.call('LTRIM', list, #r, -1)
    if redis.call('EXISTS', list) == 0 then
      laneEmptied(pre, s)
    end
    for i = 1, #r do
      ids[#ids + 1] = r[i]
    end
  end
  for _, id in ipairs(ids) do
    gone(id, redis.call('HGET', pre .. 't', id))
    drop(pre, id)
  end
elseif mode == 'z' or mode == 'f' then
  for i = 3, #ARGV - 1, 2 do
    local id = ARGV[i]
    local at = redis.call('ZSCORE', KEYS[3], id)
    if at and tonumber(at) == tonumber(ARGV[i + 1]) then
      redis.call('ZREM', KEYS[3], id)
      if mode == 'z' then
        gone(id, redis.call('HGET', pre .. 't', id))
        drop(pre, id)
      elseif redis.call('DEL', pre .. 'done:' .. id) == 1 then
        gone(id, '')
      end
    end
  end
else
  return redis.error_reply('ERR rediq: purge: unknown mode ' .. tostring(mode))
end
return out
