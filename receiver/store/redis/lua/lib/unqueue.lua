-- Takes an outbox item off its queues and frees its pending marker (if still its own).
local function unqueue(item_key, ids_key, pending_key, id)
  local f = redis.call('HMGET', item_key, 'ready', 'wait', 'pending')
  if f[1] then
    redis.call('ZREM', f[1], id)
    redis.call('ZREM', f[2], id)
    if redis.call('HGET', pending_key, f[3]) == id then
      redis.call('HDEL', pending_key, f[3])
    end
  end
  redis.call('SREM', ids_key, id)
  return f[1]
end
