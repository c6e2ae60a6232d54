-- active: list the tasks leased to worker sessions on one queue (a task is active
-- exactly when a session's lease hash maps its id). Writes nothing.
-- KEYS[1] sessions   KEYS[2] workers (sessions of the previous lease format,
-- token -> FLAG:SLOT:ID; see reclaim.lua)
-- ARGV[1] the prefix of the sessions' lease hashes NS:{Q}:lease:
-- Returns three per lease: session id, task id, lease value FLAG:TOKEN:SCORE (for
-- a lease of the previous format: FLAG:TOKEN:0).
local out = {}
for _, s in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local all = redis.call('HGETALL', ARGV[1] .. s)
  for i = 1, #all, 2 do
    if all[i] ~= '' then -- the field "" is the last fetch's token base
      out[#out + 1] = s
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    end
  end
end
for _, s in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local all = redis.call('HGETALL', ARGV[1] .. s)
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local c = string.find(v, ':', 3, true)
    if c then
      out[#out + 1] = s
      out[#out + 1] = string.sub(v, c + 1)
      out[#out + 1] = string.sub(v, 1, 2) .. all[i] .. ':0'
    end
  end
end
return out
