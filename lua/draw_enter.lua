-- draw_enter.lua: registers one entry in a draw, atomically. purchase.lua answers code 9 for an
-- item with a draw; the ledger then calls this script, and calls it first for the item's next
-- purchases (code 1 sends a purchase back to purchase.lua). An entry takes no stock.
--
-- KEYS[1] sale rules         <prefix>:{pN}:rules:<item>    (draw_at_ms set for a draw item)
-- KEYS[2] request IDs        <prefix>:{pN}:requests:<item> (hash: request_id ->
--                            '<order_id>|<user_id>'; the older generation at this key + ':old',
--                            see purchase.lua)
-- KEYS[3] entries            <prefix>:{pN}:draw-entries:<item> (hash: user_id -> order_id)
-- KEYS[4] ledger stream      <prefix>:{pN}:events
-- KEYS[5] stock counter      <prefix>:{pN}:stock:<item> (read only: the units to be drawn)
--
-- ARGV[1] item_id, ARGV[2] user_id, ARGV[3] request_id, ARGV[4] quantity
-- ARGV[5] idempotency TTL in milliseconds
-- ARGV[6] partition number, the prefix of every order_id of this stream
-- ARGV[7] order state key prefix <prefix>:{pN}:order:
--
-- Checks, in order: not a draw item (also an unknown one), sale closed, duplicate request,
-- registration closed (Redis TIME at or after draw_at_ms), sale window, per-user limit (the
-- quantity of the one entry), one entry per user: purchase.lua's order for the checks both
-- make. Success appends an `order` event with the marker draw=1 (its stream ID names the
-- order, as in purchase.lua), records the user's entry, adds the request_id to the request hash
-- (its expiry set to the TTL; purchase.lua rotates the generations) and writes the order's
-- state hash with state registered.
--
-- Returns {code, order_id, stock}:
--   0 registered   the new order_id
--   1 not a draw   '' (the item has no draw_at_ms, or is unknown: purchase.lua decides)
--   2 duplicate    the user's entry (same request_id, or another request of the same user)
--   3 not started  ''
--   4 ended        ''
--   5 limit        ''
--   7 taken        '' (the request_id placed another user's order)
--   8 closed       '' (registration closed at draw_at)
--   9 sale closed  '' (the item's sale was closed, see close.lua)

local rules = redis.call('HMGET', KEYS[1], 'limit', 'start_ms', 'end_ms', 'draw_at_ms', 'closed')
local draw_at = tonumber(rules[4]) or 0
if draw_at <= 0 then
  return {1, '', 0}
end
local stock = tonumber(redis.call('GET', KEYS[5]) or '0')
if rules[5] == '1' then
  return {9, '', stock}
end
local original = redis.call('HGET', KEYS[2], ARGV[3]) or redis.call('HGET', KEYS[2] .. ':old', ARGV[3])
if original then
  local bar = string.find(original, '|', 1, true)
  if bar and string.sub(original, bar + 1) == ARGV[2] then
    return {2, string.sub(original, 1, bar - 1), stock}
  end
  return {7, '', stock}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= draw_at then
  return {8, '', stock}
end
local start_ms, end_ms = tonumber(rules[2]) or 0, tonumber(rules[3]) or 0
if start_ms > 0 and now < start_ms then
  return {3, '', stock}
end
if end_ms > 0 and now >= end_ms then
  return {4, '', stock}
end
local quantity = tonumber(ARGV[4])
local limit = tonumber(rules[1]) or 0
if limit > 0 and quantity > limit then
  return {5, '', stock}
end
local entry = redis.call('HGET', KEYS[3], ARGV[2])
if entry then
  return {2, entry, stock}
end

local units = string.format('%d', quantity)
local ts = string.format('%d', now)
local id = redis.call('XADD', KEYS[4], '*', 'v', '1', 'type', 'order',
  'request_id', ARGV[3], 'user_id', ARGV[2], 'item_id', ARGV[1],
  'quantity', units, 'ts', ts, 'draw', '1')
local order_id = ARGV[6] .. '-' .. id
redis.call('HSET', KEYS[3], ARGV[2], order_id)
redis.call('HSET', KEYS[2], ARGV[3], order_id .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('HSET', ARGV[7] .. order_id, 'state', 'registered',
  'user_id', ARGV[2], 'item_id', ARGV[1], 'request_id', ARGV[3], 'quantity', units, 'ts', ts)
return {0, order_id, stock}
