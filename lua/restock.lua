-- restock.lua: cancels one order whose projection failed for good, atomically and at most once:
-- gives its units back and releases the buyer's per-user count (give_back, units.lua, joined in
-- front of this script) and appends a `restock` event. It does not acknowledge the order's
-- stream entry: an `orders` entry holds other orders too, and the projector acknowledges the
-- entry once every order of its batch is projected or restocked (a crash before that delivers
-- the entry again, and this script, called again, changes nothing).
--
-- KEYS[1] stock counter      <prefix>:{pN}:stock:<item>
-- KEYS[2] per-user counts    <prefix>:{pN}:users:<item>  (hash: user_id -> units)
-- KEYS[3] ledger stream      <prefix>:{pN}:events
-- KEYS[4] restock marker     <prefix>:{pN}:restocked:<order_id>
-- KEYS[5] order state        <prefix>:{pN}:order:<order_id> (exists under a pay-within rule)
-- KEYS[6] payment deadlines  <prefix>:{pN}:due
-- KEYS[7] sale rules         <prefix>:{pN}:rules:<item>
--
-- ARGV[1] order_id
-- ARGV[2] stream ID of the entry that holds the order (kept in the marker)
-- ARGV[3] item_id
-- ARGV[4] user_id
-- ARGV[5] request_id
-- ARGV[6] quantity (integer >= 1)
-- ARGV[7] reason (free text, recorded in the event)
-- ARGV[8] order time, unix milliseconds (copied into the event)
-- ARGV[9] sold-out lease, milliseconds: a restock that takes the stock from 0 to more sets
--         the rules' reopen_at to Redis TIME plus it (see purchase.lua)
--
-- The marker makes a second call for the same order a no-op. An order that expired or was
-- cancelled by its buyer has its units back already: it is only marked (code 1); a reserved or
-- paid one becomes cancelled and leaves the due set.
--
-- Returns {code, stock}:
--   0 restocked          stock after giving the units back
--   1 already restocked  current stock (nothing changed)

local state = KEYS[5] and redis.call('HGET', KEYS[5], 'state')
if redis.call('SET', KEYS[4], ARGV[2], 'NX') == false or state == 'expired' or state == 'cancelled' then
  return {1, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
if state then
  redis.call('HSET', KEYS[5], 'state', 'cancelled')
  redis.call('ZREM', KEYS[6], ARGV[1])
end

-- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.
local quantity = tonumber(ARGV[6])
local stock = give_back(KEYS[1], KEYS[2], ARGV[4], KEYS[7], quantity, nil, ARGV[9])
redis.call('XADD', KEYS[3], '*',
  'v', '1', 'type', 'restock', 'order_id', ARGV[1], 'item_id', ARGV[3],
  'user_id', ARGV[4], 'request_id', ARGV[5], 'quantity', string.format('%d', quantity),
  'reason', ARGV[7], 'ts', ARGV[8])
return {0, stock}
