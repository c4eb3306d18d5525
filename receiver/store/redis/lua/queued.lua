-- KEYS: outbox destinations. ARGV: ready key prefix, wait key prefix. Forgets destinations
-- whose queues are empty (Redis drops empty keys), in the same step as it looks.
local out = {}
for _, d in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. d, ARGV[2] .. d) > 0 then
    out[#out + 1] = d
  else
    redis.call('SREM', KEYS[1], d)
  end
end
return out
