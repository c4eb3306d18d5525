-- Prepended when loaded: lib/decide.lua (defines decide and SENDING).
-- KEYS: inbox, inbox ready, inbox leased, outbox seq, outbox ids, pending, inbox episodes,
-- inbox firing, outbox destinations, inbox owner.
-- ARGV: now, item key prefix, n inbox ids, inbox ids..., then per candidate: ledger key,
-- ready key, wait key, destination, episode, status, repeat interval, send_resolved (1/0),
-- route, body.
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local reasons = {}
for i = 4 + n, #ARGV, 10 do
  local ledger, ready, wait = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local status = ARGV[i + 5]
  local entry = redis.call('HMGET', ledger, 'firing_at', 'resolved_at')
  local pending_firing = redis.call('HEXISTS', KEYS[6], 'firing ' .. ledger) == 1
  local pending_resolved = redis.call('HEXISTS', KEYS[6], 'resolved ' .. ledger) == 1
  local firing_at, resolved_at = nil, nil
  if entry[1] then firing_at = tonumber(entry[1]) end
  if entry[2] then resolved_at = tonumber(entry[2]) end
  local reason = decide(status, firing_at, resolved_at, pending_firing, pending_resolved,
    tonumber(ARGV[i + 6]), ARGV[i + 7] == '1', now)
  if SENDING[reason] then
    local id = redis.call('INCR', KEYS[4])
    local marker = status .. ' ' .. ledger  -- as Keys.pending_marker builds it
    redis.call('HSET', ARGV[2] .. id,
      'destination', ARGV[i + 3], 'episode', ARGV[i + 4], 'status', status,
      'route', ARGV[i + 8], 'reason', reason, 'body', ARGV[i + 9], 'attempts', 0,
      'ledger', ledger, 'ready', ready, 'wait', wait, 'pending', marker)
    redis.call('ZADD', ready, id, id)
    redis.call('SADD', KEYS[5], id)
    redis.call('HSET', KEYS[6], marker, id)
    redis.call('SADD', KEYS[9], ARGV[i + 3])
  end
  reasons[#reasons + 1] = reason
end
for i = 4, 3 + n do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
  local tag = redis.call('HGET', KEYS[7], ARGV[i])
  if tag and string.sub(tag, 1, 7) == 'firing ' then
    local ep = string.sub(tag, 8)
    if redis.call('HGET', KEYS[8], ep) == ARGV[i] then redis.call('HDEL', KEYS[8], ep) end
  end
  redis.call('HDEL', KEYS[7], ARGV[i])
  redis.call('HDEL', KEYS[10], ARGV[i])
end
return reasons
