-- KEYS: recent zset. ARGV: before (exclusive), max episodes, batch, meta prefix, events
-- prefix, alert prefix.
-- Forgets at most `batch` episodes: those last changed before `before`, then the oldest
-- beyond `max episodes`. Returns how many.
local batch = tonumber(ARGV[3])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, batch)
if #gone < batch then
  local excess = redis.call('ZCARD', KEYS[1]) - #gone - tonumber(ARGV[2])
  if excess > 0 then
    -- The next oldest after those already chosen (the zset is in last_at order).
    local more = math.min(excess, batch - #gone)
    for _, member in ipairs(redis.call('ZRANGE', KEYS[1], #gone, #gone + more - 1)) do
      gone[#gone + 1] = member
    end
  end
end
for _, member in ipairs(gone) do
  local sep = string.find(member, ':', 1, true)
  redis.call('DEL', ARGV[4] .. member, ARGV[5] .. member)
  redis.call('ZREM', ARGV[6] .. string.sub(member, 1, sep - 1), string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[1], member)
end
return #gone
