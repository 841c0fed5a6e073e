-- expire.lua: expires one reserved order past its payment deadline: its units go back on sale
-- and the buyer's per-user count is released, atomically and at most once. The sweeper calls
-- it for the due orders it finds; it re-checks everything, so any number of sweepers may call
-- it for the same order at once.
--
-- KEYS[1] order state        <prefix>:{pN}:order:<order_id>  (hash, see purchase.lua)
-- KEYS[2] payment deadlines  <prefix>:{pN}:due
-- KEYS[3] ledger stream      <prefix>:{pN}:events
-- KEYS[4] stock counter      <prefix>:{pN}:stock:<item>
-- KEYS[5] per-user counts    <prefix>:{pN}:users:<item>  (hash: user_id -> units)
-- KEYS[6] sale rules         <prefix>:{pN}:rules:<item>
--
-- ARGV[1] order_id
-- ARGV[2] item_id and ARGV[3] user_id of the order (KEYS[4] and KEYS[5] are built from the item;
--         checked against the state hash)
-- ARGV[4] sold-out lease, milliseconds: giving units back to an item at 0 sets the rules'
--         reopen_at to Redis TIME plus it (see purchase.lua)
--
-- Only a reserved order whose pay_by is at or before Redis TIME (the clock pay.lua decides
-- by) expires: release (release.lua, joined in front of this script) makes the state expired,
-- takes the order off the due set, INCRBY the stock, releases the per-user counter and appends
-- an `expired` event. An order that is no
-- longer reserved (or has no state) just leaves the due set.
--
-- Returns {code, state, stock}:
--   0 expired now       'expired', stock after the units came back
--   1 unknown           '' (no state hash, or keys not the order's); removed from the due set
--   2 not reserved      the state; removed from the due set, nothing else changed
--   3 not due yet       'reserved'; nothing changed

local o = redis.call('HMGET', KEYS[1], 'state', 'item_id', 'user_id', 'quantity', 'request_id', 'pay_by', 'ts')
local state = o[1]
if not state or o[2] ~= ARGV[2] or o[3] ~= ARGV[3] then
  if not state then
    redis.call('ZREM', KEYS[2], ARGV[1])
  end
  return {1, '', 0}
end
if state ~= 'reserved' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {2, state, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(o[6]) then
  return {3, state, 0}
end

return release(o, 'expired', now, ARGV[4])
