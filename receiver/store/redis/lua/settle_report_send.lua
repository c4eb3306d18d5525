-- KEYS: the queued sends, the reports' dead letters (zset, score = id).
-- ARGV: owner, send prefix, id, action ('sent', 'retry' or 'dead'), then for 'retry':
-- not_before, error, posted ref ('' for none); for 'dead': error, now.
-- Only the send's owner settles it; returns 1 when it did, 0 when the owner holds it no more.
local id = ARGV[3]
local key = ARGV[2] .. id
if redis.call('HGET', key, 'owner') ~= ARGV[1] or not redis.call('ZSCORE', KEYS[1], id) then
  return 0
end
if ARGV[4] == 'sent' then
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
elseif ARGV[4] == 'retry' then
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'owner', '', 'lease_until', 0, 'error', ARGV[6])
  if ARGV[7] == '' then redis.call('HDEL', key, 'posted')
  else redis.call('HSET', key, 'posted', ARGV[7]) end
  redis.call('ZADD', KEYS[1], ARGV[5], id)
else
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'owner', '', 'lease_until', 0, 'error', ARGV[5], 'failed_at', ARGV[6])
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], id, id)
end
return 1
