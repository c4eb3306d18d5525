-- KEYS: the queued sends (zset, score = when claimable: a retry's not_before or a lease's
-- expiry). ARGV: now, lease expiry, owner, limit, send prefix.
-- Leases the due sends to the owner; returns {id, report, slot_at, late, destination,
-- attempts, posted, the previous owner} each.
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[4])) do
  local key = ARGV[5] .. id
  local f = redis.call('HMGET', key, 'report', 'slot_at', 'late', 'destination', 'attempts',
    'posted', 'owner')
  if f[1] then
    redis.call('HSET', key, 'owner', ARGV[3], 'lease_until', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = {id, f[1], f[2], f[3], f[4], f[5], f[6] or '', f[7] or ''}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
