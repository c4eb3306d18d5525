-- KEYS: inbox leased, inbox owner.
-- ARGV: owner, now, lease until, outbox item key prefix, n inbox ids, inbox ids...,
-- outbox ids...
-- Extends each lease the owner still holds (not run out, not settled, not taken over).
-- Returns {inbox ids no longer held, outbox ids no longer held}.
local owner, now, until_ = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = tonumber(ARGV[5])
local lost_inbox, lost_outbox = {}, {}
for i = 6, 5 + n do
  local id = ARGV[i]
  local at = redis.call('ZSCORE', KEYS[1], id)
  if redis.call('HGET', KEYS[2], id) == owner and at and tonumber(at) > now then
    redis.call('ZADD', KEYS[1], until_, id)
  else
    lost_inbox[#lost_inbox + 1] = id
  end
end
for i = 6 + n, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', ARGV[4] .. id, 'owner', 'wait')
  local at = f[2] and redis.call('ZSCORE', f[2], id)
  if f[1] == owner and at and tonumber(at) > now then
    redis.call('ZADD', f[2], until_, id)
  else
    lost_outbox[#lost_outbox + 1] = id
  end
end
return {lost_inbox, lost_outbox}
