-- Moves ids whose lease or retry time has come from `wait` to `ready`, then leases the
-- `limit` lowest ids of `ready` until `until_`. Scores are passed as strings, unrounded.
local function claim(ready, wait, now, until_, limit)
  local due = redis.call('ZRANGEBYSCORE', wait, '-inf', now)
  for _, id in ipairs(due) do
    redis.call('ZADD', ready, id, id)
  end
  if #due > 0 then
    redis.call('ZREMRANGEBYSCORE', wait, '-inf', now)
  end
  local ids = redis.call('ZRANGE', ready, 0, limit - 1)
  for _, id in ipairs(ids) do
    redis.call('ZREM', ready, id)
    redis.call('ZADD', wait, until_, id)
  end
  return ids
end
