-- KEYS: dead, outbox seq, outbox ids, pending, outbox destinations. ARGV: now, item prefix,
-- dead prefix, all (1/0), ids...
local ids = {}
if ARGV[4] == '1' then
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local count = 0
for _, dead in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], dead) == 1 then
    count = count + 1
    local key = ARGV[3] .. dead
    local f = redis.call('HMGET', key, 'pending', 'wait', 'destination')
    if f[1] and redis.call('HEXISTS', KEYS[4], f[1]) == 0 then
      local id = redis.call('INCR', KEYS[2])
      local item = ARGV[2] .. id
      redis.call('RENAME', key, item)
      redis.call('HSET', item, 'attempts', 0)
      redis.call('HDEL', item, 'error', 'failed_at')
      redis.call('ZADD', f[2], ARGV[1], id)
      redis.call('SADD', KEYS[3], id)
      redis.call('HSET', KEYS[4], f[1], id)
      if f[3] then redis.call('SADD', KEYS[5], f[3]) end
    else
      -- The same notification is queued already: replaying would send it twice.
      redis.call('DEL', key)
    end
  end
end
return count
