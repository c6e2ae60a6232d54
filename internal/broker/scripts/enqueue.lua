-- enqueue: store task records and index each as pending or scheduled, exactly once.
-- KEYS[1] records (hash: id -> message)   KEYS[2] pending (zset)   KEYS[3] scheduled (zset)
-- KEYS[4] sequence counter   KEYS[5] (optional) the call guard of the producer's lane
-- ARGV[1] wake channel   ARGV[2] call number on the lane (ignored without KEYS[5])
-- ARGV[3] epoch (Unix ms)   then four per task: id, priority slot (priority+2048),
-- delay ms (0: pending now; > 0: scheduled that long after the server's clock), message
-- Pending score = slot * 2^41 + sequence: lower priority first, then enqueue order.
-- Scheduled score = (due - epoch) ms * 4096 + slot.
-- Returns a string with one character per task: "1" added, "0" its id already
-- exists (nothing written for it). Run again with the same guard and call number
-- (go-redis re-sends a call whose reply was lost) it writes nothing and returns
-- the first run's reply, so that a retry can neither double a task nor report
-- its own first run as a duplicate.
local P = 2199023255552
local call = ARGV[2]
if #KEYS < 5 then
  call = ''
end
if call ~= '' then
  local prior = redis.call('GET', KEYS[5])
  if prior then
    local c = string.find(prior, ':', 1, true)
    if c and string.sub(prior, 1, c - 1) == call then
      return string.sub(prior, c + 1)
    end
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
-- Check every argument before the first write: an error after it would leave
-- half a call done.
for i = 4, #ARGV, 4 do
  local slot, delay = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if not slot or slot < 0 or slot > 4095 or slot % 1 ~= 0 then
    return redis.error_reply('ERR rediq: priority slot ' .. ARGV[i + 1] .. ' is outside [0, 4095]')
  end
  if not delay or delay < 0 or delay % 1 ~= 0 or now + delay >= P then
    return redis.error_reply('ERR rediq: delay ' .. ARGV[i + 2] .. ' ms is negative or past 2094')
  end
end
local wasEmpty = redis.call('EXISTS', KEYS[2]) == 0
local seq = 0
if not wasEmpty then
  seq = tonumber(redis.call('GET', KEYS[4]) or '0')
end
local n = (#ARGV - 3) / 4
if seq + n >= P then
  -- 2^41 enqueues without the queue ever emptying: renumber what is pending
  -- (same order) so that sequences never spill into the next priority.
  local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  seq = 0
  local add = {}
  for i = 1, #all, 2 do
    seq = seq + 1
    add[#add + 1] = math.floor(tonumber(all[i + 1]) / P) * P + seq
    add[#add + 1] = all[i]
    if #add >= 1000 then
      redis.call('ZADD', KEYS[2], unpack(add))
      add = {}
    end
  end
  if #add > 0 then
    redis.call('ZADD', KEYS[2], unpack(add))
  end
end
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local earliest = first[2] and tonumber(first[2]) or math.huge
local wakeScheduled = false
local status, pend, sched = {}, {}, {}
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HSETNX', KEYS[1], id, ARGV[i + 3]) == 1 then
    local slot, delay = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    if delay == 0 then
      seq = seq + 1
      pend[#pend + 1] = slot * P + seq
      pend[#pend + 1] = id
      if #pend >= 1000 then
        redis.call('ZADD', KEYS[2], unpack(pend))
        pend = {}
      end
    else
      local score = (now + delay) * 4096 + slot
      if score < earliest then
        earliest = score
        wakeScheduled = true
      end
      sched[#sched + 1] = score
      sched[#sched + 1] = id
      if #sched >= 1000 then
        redis.call('ZADD', KEYS[3], unpack(sched))
        sched = {}
      end
    end
    status[#status + 1] = '1'
  else
    status[#status + 1] = '0'
  end
end
if #pend > 0 then
  redis.call('ZADD', KEYS[2], unpack(pend))
end
if #sched > 0 then
  redis.call('ZADD', KEYS[3], unpack(sched))
end
redis.call('SET', KEYS[4], seq)
local out = table.concat(status)
if call ~= '' then
  redis.call('SET', KEYS[5], call .. ':' .. out, 'PX', 300000)
end
-- A worker only goes idle after emptying the queue, so "was empty" is the only
-- transition it must hear; a new earliest due time re-arms idle workers' timers.
if (wasEmpty and redis.call('EXISTS', KEYS[2]) == 1) or wakeScheduled then
  redis.call('PUBLISH', ARGV[1], 'p')
end
return out
