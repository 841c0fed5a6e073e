-- cancel.lua: the buyer cancels a reserved order: its units go back on sale and the buyer's
-- per-user count is released, atomically and at most once.
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
-- ARGV[4] the cancelling user: only the order's own user may cancel it (never '')
-- ARGV[5] sold-out lease, milliseconds: giving units back to an item at 0 sets the rules'
--         reopen_at to Redis TIME plus it (see purchase.lua)
--
-- Only a reserved order is cancelled (also past pay_by, before the sweeper expired it: the
-- units go back either way, once): release (release.lua, joined in front of this script) makes
-- the state cancelled, takes the order off the due set, INCRBY the stock, releases the
-- per-user count and appends a `cancelled` event.
--
-- Returns {code, state, stock}:
--   0 cancelled now     'cancelled', stock after the units came back
--   1 unknown           '' (no state hash, another user's order, or keys not the order's)
--   2 not reserved      the state: 'cancelled' (already), 'paid' or 'expired'; nothing changed

local o = redis.call('HMGET', KEYS[1], 'state', 'item_id', 'user_id', 'quantity', 'request_id', 'pay_by', 'ts')
local state = o[1]
if not state or o[2] ~= ARGV[2] or o[3] ~= ARGV[3] or o[3] ~= ARGV[4] then
  return {1, '', 0}
end
if state ~= 'reserved' then
  return {2, state, 0}
end

local t = redis.call('TIME')
return release(o, 'cancelled', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[5])
