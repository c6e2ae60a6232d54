-- pause_id: loaded before pause.lua and resume.lua.
-- Ids are the larger of INCR pause:ver and the server's clock in µs (stored
-- back): they grow even if Redis lost the counter (an old snapshot, a replica
-- that lagged, a deleted namespace) while workers remember a later id.
local function nextID(ver)
  local n = redis.call('INCR', ver)
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if us > n then
    n = us
    redis.call('SET', ver, string.format('%d', n))
  end
  return string.format('%d', n)
end
