-- KEYS: the slot's key, the report -> latest slot hash, the send seq, the queued sends.
-- ARGV: owner, report, slot time, TTL in seconds, late (1/0), send prefix, destinations...
-- Set-if-absent: 1 for the one caller that takes the slot, 0 for every other. The caller
-- that takes it queues one send per destination in the same step.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[4]) then
  return 0
end
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1e308')
if tonumber(ARGV[3]) > last then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
for i = 7, #ARGV do
  local id = redis.call('INCR', KEYS[3])
  redis.call('HSET', ARGV[6] .. id, 'report', ARGV[2], 'slot_at', ARGV[3], 'late', ARGV[5],
    'destination', ARGV[i], 'attempts', 0, 'owner', '', 'lease_until', 0)
  redis.call('ZADD', KEYS[4], 0, id)
end
return 1
