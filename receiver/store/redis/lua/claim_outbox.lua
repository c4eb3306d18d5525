-- Prepended when loaded: lib/claim.lua (defines claim).
-- KEYS: outbox ready (D), outbox wait (D), pending.
-- ARGV: now, lease until, limit, item key prefix, recheck at, owner.
-- Returns {id, route, reason, body, attempts, ref, taken over (1: claimed before by an owner
-- whose lease ran out)}.
local ids = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do claimed[id] = true end
local out = {}
for _, id in ipairs(ids) do
  local item = ARGV[4] .. id
  local f = redis.call('HMGET', item, 'route', 'reason', 'body', 'attempts', 'ledger',
    'status', 'owner')
  if f[1] then
    local fid = nil
    if f[6] == 'resolved' then
      fid = redis.call('HGET', KEYS[3], 'firing ' .. f[5])
    end
    if fid and fid ~= id and not claimed[fid] then
      -- Its firing is still queued (retrying, or leased by another replica): a resolve
      -- never overtakes it. Look again when the firing is due, or shortly.
      local at = redis.call('ZSCORE', KEYS[2], fid)
      redis.call('ZREM', KEYS[2], id)
      if at then
        redis.call('ZADD', KEYS[2], math.min(tonumber(at), tonumber(ARGV[5])), id)
      else
        redis.call('ZADD', KEYS[1], id, id)
      end
    else
      local ref = redis.call('HGET', f[5], 'ref')
      -- A released, retried or new item has no owner: one still named lost its lease.
      local taken = f[7] and 1 or 0
      redis.call('HSET', item, 'owner', ARGV[6])
      out[#out + 1] = {id, f[1], f[2], f[3], f[4], ref, taken}
    end
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
