-- Prepended when loaded: lib/claim.lua (defines claim).
-- KEYS: inbox, inbox ready, inbox leased, inbox episodes, inbox firing, inbox owner.
-- ARGV: now, lease until, limit, recheck at, owner.
-- Returns {id, alert, taken over (1: claimed before by an owner whose lease ran out)}.
local ids = claim(KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do claimed[id] = true end
local out = {}
for _, id in ipairs(ids) do
  local alert = redis.call('HGET', KEYS[1], id)
  local deferred = false
  local tag = redis.call('HGET', KEYS[4], id)
  if alert and tag and string.sub(tag, 1, 9) == 'resolved ' then
    local fid = redis.call('HGET', KEYS[5], string.sub(tag, 10))
    if fid and not claimed[fid] and redis.call('HEXISTS', KEYS[1], fid) == 1 then
      -- Its firing is not routed yet (another replica holds it): look again shortly.
      deferred = true
      local at = redis.call('ZSCORE', KEYS[3], fid)
      redis.call('ZREM', KEYS[3], id)
      if at then
        redis.call('ZADD', KEYS[3], math.min(tonumber(at), tonumber(ARGV[4])), id)
      else
        redis.call('ZADD', KEYS[2], id, id)
      end
    end
  end
  if alert and not deferred then
    -- A released or new item has no owner: one still named lost its lease.
    local taken = redis.call('HGET', KEYS[6], id) and 1 or 0
    redis.call('HSET', KEYS[6], id, ARGV[5])
    out[#out + 1] = {id, alert, taken}
  elseif not alert then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[6], id)
  end
end
return out
