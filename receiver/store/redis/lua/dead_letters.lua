-- KEYS: dead. ARGV: dead prefix.
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'destination', 'body', 'episode', 'status',
    'error', 'attempts', 'failed_at')
  if f[1] then
    out[#out + 1] = {id, f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
  end
end
return out
