-- KEYS: recent zset, destinations hash.
-- ARGV: cap, meta prefix, events prefix, episode count, then per episode two values:
-- a JSON array [member, its alert's zset, episode, first_at, last_at, has meta (1/0),
-- alertname, labels, source, started_at] (times as decimal strings), and its events' JSON
-- joined by newlines ('' for none; compact JSON holds no newline); then a JSON array of
-- [destination, delivered_at, error_at, error] ('' for none).
-- One recorder batch in few, large arguments (one per event would cost the client more
-- than the script). The meta fields are set once (set-if-absent); an episode recorded
-- before its meta is indexed with started_at 0 until the meta arrives.
local cap = tonumber(ARGV[1])
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local h = cjson.decode(ARGV[i])
  local member, alert, episode, first, last = h[1], h[2], h[3], h[4], h[5]
  local meta, events = ARGV[2] .. member, ARGV[3] .. member
  if h[6] == '1' and redis.call('HSETNX', meta, 'alertname', h[7]) == 1 then
    redis.call('HSET', meta, 'labels', h[8], 'source', h[9], 'started_at', h[10])
    redis.call('ZADD', alert, h[10], episode)
  else
    redis.call('ZADD', alert, 'NX', 0, episode)
  end
  local span = redis.call('HMGET', meta, 'first_at', 'last_at')
  if not span[1] or tonumber(first) < tonumber(span[1]) then
    redis.call('HSET', meta, 'first_at', first)
  end
  if not span[2] or tonumber(last) > tonumber(span[2]) then
    redis.call('HSET', meta, 'last_at', last)
  end
  redis.call('ZADD', KEYS[1], 'GT', last, member)
  local blob = ARGV[i + 1]
  if blob ~= '' then
    -- At most `cap` events per episode come in one call (the caller keeps the latest).
    local lines, start = {}, 1
    while true do
      local stop = string.find(blob, '\n', start, true)
      if not stop then
        lines[#lines + 1] = string.sub(blob, start)
        break
      end
      lines[#lines + 1] = string.sub(blob, start, stop - 1)
      start = stop + 1
    end
    local length = redis.call('RPUSH', events, unpack(lines))
    if length > cap then redis.call('LTRIM', events, -cap, -1) end
  end
  i = i + 2
end
for _, d in ipairs(cjson.decode(ARGV[i])) do
  local destination, delivered, error_at = d[1], d[2], d[3]
  local raw = redis.call('HGET', KEYS[2], destination)
  local state = raw and cjson.decode(raw) or {}
  if delivered ~= '' and (not state.delivered_at
      or tonumber(delivered) > tonumber(state.delivered_at)) then
    state.delivered_at = delivered
  end
  if error_at ~= '' and (not state.error_at
      or tonumber(error_at) >= tonumber(state.error_at)) then
    state.error_at = error_at
    state.error = d[4]
  end
  redis.call('HSET', KEYS[2], destination, cjson.encode(state))
end
return 1
