-- KEYS: ledger index. ARGV: cutoff (exclusive), batch.
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, key in ipairs(old) do
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], key)
end
return #old
