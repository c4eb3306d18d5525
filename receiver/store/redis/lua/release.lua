-- KEYS: inbox, inbox ready, inbox leased, inbox owner.
-- ARGV: owner, outbox item key prefix, n inbox ids, inbox ids..., outbox ids...
-- Makes each claim the owner holds claimable at once (a graceful stop). Returns how many.
local owner = ARGV[1]
local n = tonumber(ARGV[3])
local count = 0
for i = 4, 3 + n do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == owner then
    redis.call('HDEL', KEYS[4], id)
    if redis.call('ZREM', KEYS[3], id) == 1 and redis.call('HEXISTS', KEYS[1], id) == 1 then
      redis.call('ZADD', KEYS[2], id, id)
      count = count + 1
    end
  end
end
for i = 4 + n, #ARGV do
  local id = ARGV[i]
  local item = ARGV[2] .. id
  local f = redis.call('HMGET', item, 'owner', 'ready', 'wait')
  if f[1] == owner then
    redis.call('HDEL', item, 'owner')
    if redis.call('ZREM', f[3], id) == 1 then
      redis.call('ZADD', f[2], id, id)
      count = count + 1
    end
  end
end
return count
