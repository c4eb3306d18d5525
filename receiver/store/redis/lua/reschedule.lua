-- KEYS: none. ARGV: not_before, error, item key prefix, ids...
for i = 4, #ARGV do
  local item = ARGV[3] .. ARGV[i]
  local f = redis.call('HMGET', item, 'ready', 'wait')
  if f[1] then
    redis.call('HINCRBY', item, 'attempts', 1)
    redis.call('HSET', item, 'error', ARGV[2])
    redis.call('HDEL', item, 'owner')
    redis.call('ZREM', f[1], ARGV[i])
    redis.call('ZADD', f[2], ARGV[1], ARGV[i])
  end
end
return 0
