-- Prepended when loaded: lib/unqueue.lua (defines unqueue).
-- KEYS: outbox ids, pending, ledger index. ARGV: now, ledger TTL ms, item key prefix, then
-- per item: id, ledger key, firing (1/0), ref JSON or ''.
local ttl = tonumber(ARGV[2])
for i = 4, #ARGV, 4 do
  local id, ledger = ARGV[i], ARGV[i + 1]
  if ARGV[i + 2] == '1' then
    redis.call('HSET', ledger, 'firing_at', ARGV[1])
    if ARGV[i + 3] ~= '' then
      redis.call('HSET', ledger, 'ref', ARGV[i + 3])
    end
  else
    redis.call('HSET', ledger, 'resolved_at', ARGV[1])
  end
  -- The index scores the later of the two times, as SQLite's purge compares.
  local times = redis.call('HMGET', ledger, 'firing_at', 'resolved_at')
  local last = ARGV[1]
  for j = 1, 2 do
    if times[j] and tonumber(times[j]) > tonumber(last) then last = times[j] end
  end
  redis.call('ZADD', KEYS[3], last, ledger)
  if ttl > 0 then
    redis.call('PEXPIRE', ledger, ttl)
  end
  local item = ARGV[3] .. id
  unqueue(item, KEYS[1], KEYS[2], id)
  redis.call('DEL', item)
end
return 0
