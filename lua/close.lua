-- close.lua: closes an item's sale for good and appends the `stock` event (op close) that says
-- so, in one atomic call. A closed item keeps its stock counter and rules (it is still listed
-- and answered), refuses purchases and stock changes, and its per-order keys are deleted once
-- its reservations are settled (Ledger.Cleanup).
--
-- KEYS[1] stock counter      <prefix>:{pN}:stock:<item>
-- KEYS[2] sale rules         <prefix>:{pN}:rules:<item>
-- KEYS[3] ledger stream      <prefix>:{pN}:events
--
-- ARGV[1] item_id
--
-- The rules hash gains closed = 1 and closed_id = the close event's stream ID.
--
-- Returns {code, stock, closed_id}:
--   0 ok              stock left, the close event's stream ID
--   1 unknown item    0, ''
--   2 already closed  stock left, the earlier close event's stream ID (nothing changed)

local current = redis.call('GET', KEYS[1])
if not current then
  return {1, 0, ''}
end
local rules = redis.call('HMGET', KEYS[2], 'limit', 'start_ms', 'end_ms', 'pay_within_ms', 'closed', 'closed_id')
if rules[5] == '1' then
  return {2, tonumber(current), rules[6] or ''}
end
local id = redis.call('XADD', KEYS[3], '*',
  'v', '1', 'type', 'stock', 'item_id', ARGV[1],
  'op', 'close', 'quantity', '0', 'stock', current,
  'limit', rules[1] or '0', 'start_ms', rules[2] or '0', 'end_ms', rules[3] or '0',
  'pay_within_ms', rules[4] or '0', 'closed', '1')
redis.call('HSET', KEYS[2], 'closed', '1', 'closed_id', id)
return {0, tonumber(current), id}
