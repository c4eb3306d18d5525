-- KEYS: slot hash, pause hash. ARGV: destination, interval, now.
-- The next free slot of a destination, shared by every replica; a pause (Retry-After)
-- pushes it out.
local at = tonumber(ARGV[3])
local slot = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local paused = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if slot > at then at = slot end
if paused > at then at = paused end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.6f', at + tonumber(ARGV[2])))
return string.format('%.6f', at)
