-- receiver.dedup.decide, in Lua, so that plan() decides and queues in one atomic step.
-- firing_at / resolved_at are numbers or nil; pending_* are booleans.
-- The reasons and SENDING are filled in when the script is loaded (scripts.py), from
-- DedupReason (receiver.models) and SENDING (receiver.dedup): named in Python only.
local function decide(status, firing_at, resolved_at, pending_firing, pending_resolved,
                      repeat_interval, send_resolved, now)
  if status == 'firing' then
    if pending_firing then return '${DedupReason.PENDING}' end
    if firing_at == nil then return '${DedupReason.FIRST}' end
    if resolved_at ~= nil then return '${DedupReason.ALREADY_RESOLVED}' end
    if now - firing_at >= repeat_interval then return '${DedupReason.REPEAT}' end
    return '${DedupReason.ALREADY_NOTIFIED}'
  end
  if not send_resolved then return '${DedupReason.SEND_RESOLVED_OFF}' end
  if pending_resolved then return '${DedupReason.PENDING}' end
  if resolved_at ~= nil then return '${DedupReason.ALREADY_RESOLVED}' end
  if firing_at ~= nil or pending_firing then return '${DedupReason.RESOLVED}' end
  return '${DedupReason.NOT_NOTIFIED}'
end
local SENDING = ${SENDING}
