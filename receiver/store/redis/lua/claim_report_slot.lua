-- KEYS: the slot's key, the report -> latest slot hash.
-- ARGV: owner, report, slot time, TTL in seconds.
-- Set-if-absent: 1 for the one caller that takes the slot, 0 for every other.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[4]) then
  return 0
end
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1e308')
if tonumber(ARGV[3]) > last then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
return 1
