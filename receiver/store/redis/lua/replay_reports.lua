-- KEYS: the reports' dead letters, the queued sends. ARGV: send prefix, all (1/0), ids...
-- Queues the dead letters again, to be sent at once; returns how many.
local ids = {}
if ARGV[2] == '1' then
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local count = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = ARGV[1] .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'attempts', 0)
      redis.call('HDEL', key, 'failed_at', 'error')
      redis.call('ZADD', KEYS[2], 0, id)
      count = count + 1
    end
  end
end
return count
