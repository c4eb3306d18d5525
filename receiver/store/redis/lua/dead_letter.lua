-- Prepended when loaded: lib/unqueue.lua (defines unqueue).
-- KEYS: outbox ids, pending, dead, dead seq. ARGV: now, error, item prefix, dead prefix, ids...
for i = 5, #ARGV do
  local id = ARGV[i]
  local item = ARGV[3] .. id
  if unqueue(item, KEYS[1], KEYS[2], id) then
    local dead = redis.call('INCR', KEYS[4])
    local key = ARGV[4] .. dead
    redis.call('RENAME', item, key)
    redis.call('HDEL', key, 'owner')
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'error', ARGV[2], 'failed_at', ARGV[1])
    redis.call('ZADD', KEYS[3], dead, dead)
  end
end
return 0
