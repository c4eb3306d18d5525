-- KEYS: inbox, inbox ready, inbox seq, inbox episodes, inbox firing.
-- ARGV: now, window, window ms, (seen key, alert, status, episode)...
local now, window, window_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local accepted, duplicates = 0, 0
-- One character per alert, in order: '1' a duplicate, '0' stored.
local flags = {}
for i = 4, #ARGV, 4 do
  local seen = redis.call('GET', ARGV[i])
  if seen and now - tonumber(seen) < window then
    duplicates = duplicates + 1
    flags[#flags + 1] = '1'
  else
    flags[#flags + 1] = '0'
    if window_ms > 0 then
      redis.call('SET', ARGV[i], ARGV[1], 'PX', window_ms)
    end
    local id = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], id, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], id, id)
    redis.call('HSET', KEYS[4], id, ARGV[i + 2] .. ' ' .. ARGV[i + 3])
    if ARGV[i + 2] == 'firing' then
      redis.call('HSET', KEYS[5], ARGV[i + 3], id)
    end
    accepted = accepted + 1
  end
end
return {accepted, duplicates, table.concat(flags)}
