-- KEYS: the queued sends. ARGV: now, lease expiry, owner, send prefix, ids...
-- Extends each lease the owner still holds; returns the ids it holds.
local held = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local key = ARGV[4] .. id
  local f = redis.call('HMGET', key, 'owner', 'lease_until')
  if f[1] == ARGV[3] and tonumber(f[2] or '0') > tonumber(ARGV[1])
      and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('HSET', key, 'lease_until', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    held[#held + 1] = id
  end
end
return held
