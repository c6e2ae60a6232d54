-- requeue: run dead or retry-waiting tasks again now, with their updated records
-- (the caller resets the retry counts).
-- KEYS[1] records   KEYS[2] pending (NS:{Q}:pending: the lists are built from it,
-- lib.lua)   KEYS[3] scheduled   KEYS[4] dead   KEYS[5] sequence counter (not used)
-- KEYS[6] recovered   KEYS[7] orphaned   KEYS[8] meta
-- (an expiry deadline in a task's meta is cleared: a requeued task runs)
-- ARGV[1] wake channel, then three per task: id, lane (priority slot, and
-- "|FLOW" for a task of a flow: lib.lua), message
-- A task is requeued only if it is still in dead or scheduled (with its record):
-- it goes to the back of its priority in pending, like an enqueue (into a queue
-- with nothing pending, the idle workers are woken).
-- Returns a string with one character per task: "1" requeued, "0" not (it is no
-- longer dead or scheduled). A second run finds them pending and answers "0".
local ok = {}
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  local slot, flow = laneOf(ARGV[i + 1])
  if not slot or slot < 0 or slot > 4095 or slot % 1 ~= 0 or flow == '' then
    return redis.error_reply('ERR rediq: lane ' .. ARGV[i + 1] .. ' is not a priority slot in [0, 4095] with an optional |FLOW')
  end
  if redis.call('HEXISTS', KEYS[1], id) == 1 and
      (redis.call('ZSCORE', KEYS[4], id) or redis.call('ZSCORE', KEYS[3], id)) then
    ok[#ok + 1] = i
  end
end
local status = {}
for i = 2, #ARGV, 3 do
  status[#status + 1] = '0'
end
if #ok > 0 then
  local pre = string.sub(KEYS[2], 1, #KEYS[2] - #'pending')
  local wasEmpty = redis.call('EXISTS', KEYS[2] .. ':lanes', KEYS[2] .. ':slots') == 0
  local laneAdded = false
  for _, i in ipairs(ok) do
    local id = ARGV[i]
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HSET', KEYS[1], id, ARGV[i + 2])
    redis.call('HDEL', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
    local m = redis.call('HGET', KEYS[8], id)
    if m then
      local c = string.find(m, ':', 1, true)
      if c then
        redis.call('HSET', KEYS[8], id, '0' .. string.sub(m, c))
      end
    end
    redis.call('HDEL', pre .. 'flow', id)
    local slot, flow = laneOf(ARGV[i + 1])
    if pend(pre, slot, id, false, flow) then
      laneAdded = true
    end
    status[(i + 1) / 3] = '1'
  end
  if wasEmpty and laneAdded then
    redis.call('PUBLISH', ARGV[1], 'p')
  end
end
return table.concat(status)
