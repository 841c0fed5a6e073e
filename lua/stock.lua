-- stock.lua: changes an item's stock and sale rules and appends the `stock` event that says so,
-- in one atomic call. Nothing else in the system writes the stock counter without an event.
--
-- KEYS[1] stock counter      <prefix>:{pN}:stock:<item>
-- KEYS[2] sale rules         <prefix>:{pN}:rules:<item>
-- KEYS[3] ledger stream      <prefix>:{pN}:events
-- KEYS[4] items index (set)  <prefix>:{pN}:items
--
-- ARGV[1] item_id
-- ARGV[2] op: 'set' (stock becomes ARGV[3]), 'init' (like set, but only for an item that has
--         no stock yet; recorded as a set) or 'add' (stock changes by ARGV[3], may be < 0)
-- ARGV[3] quantity, an integer
-- ARGV[4] per-user limit, integer >= 0 (0 = no limit), or '' to keep the current one
-- ARGV[5] sale start, unix milliseconds (0 = open), or '' to keep
-- ARGV[6] sale end, unix milliseconds (0 = never), or '' to keep
-- ARGV[7] sold-out lease, milliseconds: a change that takes the stock from 0 (or less) to more
--         than 0 sets the rules' reopen_at to Redis TIME plus it (see purchase.lua)
-- ARGV[8] most units an item may hold: a change whose result would exceed it is refused
-- ARGV[9] pay-within, milliseconds (0 = orders need no payment), or '' (or absent) to keep
-- ARGV[10] draw time, unix milliseconds, and ARGV[11] the SHA-256 commitment (hex) of the
--         draw's seed: the item is sold by a draw (draw_enter.lua); '' (or absent) to keep
--
-- The event carries the op and quantity (so that folding the events gives the counter) and the
-- rules in force after the change; the event that creates the item also carries created 1.
--
-- Returns {code, stock}:
--   0 ok              stock after the change, and the milliseconds until reopen_at (0 when
--                     it is past): {0, stock, wait}
--   1 unknown item    0 ('add' on an item that has never been set)
--   2 negative stock  current stock ('add' would take the stock below zero)
--   3 exists          current stock ('init' on an item that already has stock; nothing changed)
--   4 too much stock  current stock (the result would exceed ARGV[8]; nothing changed)
--   5 bad window      current stock (the sale end in force would not be after its start)
--   6 closed          current stock (the item's sale was closed, see close.lua; nothing changed)
--   7 draw fixed      current stock (a new draw time or commitment for an item whose draw time
--                     has come; nothing changed)
--
-- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.

local current = redis.call('GET', KEYS[1])
local quantity = tonumber(ARGV[3])
local max_stock = tonumber(ARGV[8])
local op = ARGV[2]
local stock
if op == 'init' then
  if current then
    return {3, tonumber(current)}
  end
  op = 'set'
end
if redis.call('HGET', KEYS[2], 'closed') == '1' then
  return {6, tonumber(current) or 0}
end
if op == 'set' then
  stock = quantity
else
  if not current then
    return {1, 0}
  end
  stock = tonumber(current) + quantity
  if stock < 0 then
    return {2, tonumber(current)}
  end
end
-- A restock may leave the stock above the maximum: taking units off or changing only the rules
-- is still allowed then.
if stock > max_stock and (op == 'set' or quantity > 0) then
  return {4, tonumber(current) or 0}
end

local rules = redis.call('HMGET', KEYS[2], 'limit', 'start_ms', 'end_ms', 'reopen_at')
if ARGV[4] ~= '' then rules[1] = ARGV[4] end
if ARGV[5] ~= '' then rules[2] = ARGV[5] end
if ARGV[6] ~= '' then rules[3] = ARGV[6] end
local start_ms, end_ms = tonumber(rules[2]) or 0, tonumber(rules[3]) or 0
if start_ms > 0 and end_ms > 0 and end_ms <= start_ms then
  return {5, tonumber(current) or 0}
end

-- Once the draw time in force has come, registration is closed and the draw may be under way:
-- its time and seed commitment are fixed from then on.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if (ARGV[10] or '') ~= '' then
  local at = tonumber(redis.call('HGET', KEYS[2], 'draw_at_ms')) or 0
  if at > 0 and now >= at then
    return {7, tonumber(current) or 0}
  end
end

if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'limit', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'start_ms', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'end_ms', ARGV[6]) end
if (ARGV[9] or '') ~= '' then redis.call('HSET', KEYS[2], 'pay_within_ms', ARGV[9]) end
local pay_within = redis.call('HGET', KEYS[2], 'pay_within_ms') or '0'
if (ARGV[10] or '') ~= '' then
  redis.call('HSET', KEYS[2], 'draw_at_ms', ARGV[10], 'draw_commit', ARGV[11])
end
local draw = redis.call('HMGET', KEYS[2], 'draw_at_ms', 'draw_commit')

local reopen_at = tonumber(rules[4]) or 0
if current and tonumber(current) <= 0 and stock > 0 then
  reopen_at = math.max(reopen_at, now + tonumber(ARGV[7]))
  redis.call('HSET', KEYS[2], 'reopen_at', string.format('%d', reopen_at))
end

stock = string.format('%d', stock)
redis.call('SET', KEYS[1], stock)
redis.call('SADD', KEYS[4], ARGV[1])
local event = {'v', '1', 'type', 'stock', 'item_id', ARGV[1],
  'op', op, 'quantity', ARGV[3], 'stock', stock,
  'limit', rules[1] or '0', 'start_ms', rules[2] or '0', 'end_ms', rules[3] or '0',
  'pay_within_ms', pay_within, 'draw_at_ms', draw[1] or '0', 'draw_commit', draw[2] or ''}
if not current then
  event[#event + 1], event[#event + 2] = 'created', '1'
end
redis.call('XADD', KEYS[3], '*', unpack(event))
return {0, tonumber(stock), math.max(reopen_at - now, 0)}
