-- purchase.lua: decides one purchase atomically, in one round trip.
--
-- KEYS[1] stock counter      <prefix>:{pN}:stock:<item>     (string, integer units left)
-- KEYS[2] sale rules         <prefix>:{pN}:rules:<item>     (hash: limit, start_ms, end_ms,
--                                                            reopen_at, draw_at_ms)
-- KEYS[3] idempotency key    <prefix>:{pN}:req:<item>:<request_id>
-- KEYS[4] per-user counter   <prefix>:{pN}:user:<item>:<user_id>
-- KEYS[5] ledger stream      <prefix>:{pN}:events
-- KEYS[6] payment deadlines  <prefix>:{pN}:due               (sorted set: order_id -> pay_by)
--
-- ARGV[1] item_id
-- ARGV[2] user_id
-- ARGV[3] request_id
-- ARGV[4] quantity (integer >= 1; validated by the caller)
-- ARGV[5] idempotency TTL in milliseconds
-- ARGV[6] partition number, the prefix of every order_id of this stream
-- ARGV[7] order state key prefix <prefix>:{pN}:order: (the order_id completes the key; it is
--         known only after the XADD, and carries the partition's hash tag like the KEYS)
--
-- Checks, in order: unknown item, closed sale, duplicate request, sale window, per-user limit, stock. An
-- item that came back on sale after it was sold out is refused as sold out until its
-- reopen_at (unix ms, Redis TIME; written by the scripts that give units back), whatever its
-- stock: the sold-out lease that lets serving processes answer sold out from memory.
-- Only success writes anything: DECRBY the stock, XADD the order event (its stream ID,
-- prefixed with the partition, is the order_id), SET the idempotency key to
-- '<order_id>|<user_id>' with the TTL, INCRBY the per-user counter. For an item with a
-- pay-within rule the order event also carries pay_by (order time + pay-within), the order's
-- state hash is written (state reserved, pay_by, user_id, item_id, request_id, quantity, ts)
-- and the order is added to the due set. A refusal changes nothing
-- and does not burn the request_id. A request_id is answered as a duplicate only to the user
-- who placed its order; any other user (and everyone, for a value without '|' written before
-- the owner was stored) gets code 7, which does not reveal the order.
--
-- Returns {code, order_id, stock}:
--   0 ok            order_id of the new order, stock left after it
--   1 unknown item  '', 0
--   2 duplicate     the original order_id, current stock
--   3 not started   '', current stock
--   4 ended         '', current stock
--   5 limit         '', current stock (the user would exceed the per-user limit)
--   6 sold out     '', current stock (less than the quantity asked for, or reopen_at not
--                  reached yet); with no stock left, also the stream's last ID: the item is
--                  sold out as of that ledger position
--   7 taken         '', current stock (the request_id placed another user's order)
--   8 closed        '', current stock (the item's sale was closed, see close.lua)
--   9 draw          '', current stock: the item is sold by a draw (draw_enter.lua decides)

local stock = redis.call('GET', KEYS[1])
if not stock then
  return {1, '', 0}
end
stock = tonumber(stock)
local rules = redis.call('HMGET', KEYS[2], 'limit', 'start_ms', 'end_ms', 'pay_within_ms', 'reopen_at', 'closed', 'draw_at_ms')
if rules[6] == '1' then
  return {8, '', stock}
end

local original = redis.call('GET', KEYS[3])
if original then
  local bar = string.find(original, '|', 1, true)
  if bar and string.sub(original, bar + 1) == ARGV[2] then
    return {2, string.sub(original, 1, bar - 1), stock}
  end
  return {7, '', stock}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if (tonumber(rules[7]) or 0) > 0 then
  return {9, '', stock}
end
local limit = tonumber(rules[1]) or 0
local start_ms = tonumber(rules[2]) or 0
local end_ms = tonumber(rules[3]) or 0
if start_ms > 0 and now < start_ms then
  return {3, '', stock}
end
if end_ms > 0 and now >= end_ms then
  return {4, '', stock}
end

local quantity = tonumber(ARGV[4])
if limit > 0 then
  local bought = tonumber(redis.call('GET', KEYS[4]) or '0')
  if bought + quantity > limit then
    return {5, '', stock}
  end
end
if stock < quantity or now < (tonumber(rules[5]) or 0) then
  if stock == 0 then
    local last = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
    if last[1] then
      return {6, '', stock, last[1][1]}
    end
  end
  return {6, '', stock}
end

-- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.
local units = string.format('%d', quantity)
local left = redis.call('DECRBY', KEYS[1], units)
local ts = string.format('%d', now)
-- The event's fields are passed to XADD directly: a table and unpack cost Redis 2 % of the
-- purchase (docs/PERFORMANCE.md).
local pay_by = nil
local id
if (tonumber(rules[4]) or 0) > 0 then
  pay_by = string.format('%d', now + tonumber(rules[4]))
  id = redis.call('XADD', KEYS[5], '*', 'v', '1', 'type', 'order',
    'request_id', ARGV[3], 'user_id', ARGV[2], 'item_id', ARGV[1],
    'quantity', units, 'ts', ts, 'pay_by', pay_by)
else
  id = redis.call('XADD', KEYS[5], '*', 'v', '1', 'type', 'order',
    'request_id', ARGV[3], 'user_id', ARGV[2], 'item_id', ARGV[1],
    'quantity', units, 'ts', ts)
end
local order_id = ARGV[6] .. '-' .. id
redis.call('SET', KEYS[3], order_id .. '|' .. ARGV[2], 'PX', ARGV[5])
redis.call('INCRBY', KEYS[4], units)
if pay_by then
  redis.call('HSET', ARGV[7] .. order_id, 'state', 'reserved', 'pay_by', pay_by,
    'user_id', ARGV[2], 'item_id', ARGV[1], 'request_id', ARGV[3], 'quantity', units, 'ts', ts)
  redis.call('ZADD', KEYS[6], pay_by, order_id)
end
return {0, order_id, left}
