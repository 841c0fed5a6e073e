-- restock.lua: cancels one order whose projection failed for good, atomically and at most once:
-- gives its units back, releases the buyer's per-user count, appends a `restock` event and
-- acknowledges the order's stream entry in the projector's consumer group.
--
-- KEYS[1] stock counter      <prefix>:{pN}:stock:<item>
-- KEYS[2] per-user counter   <prefix>:{pN}:user:<item>:<user_id>
-- KEYS[3] ledger stream      <prefix>:{pN}:events
-- KEYS[4] restock marker     <prefix>:{pN}:restocked:<order_id>
-- KEYS[5] order state        <prefix>:{pN}:order:<order_id> (exists under a pay-within rule)
-- KEYS[6] payment deadlines  <prefix>:{pN}:due
-- KEYS[7] sale rules         <prefix>:{pN}:rules:<item>
--
-- ARGV[1] order_id
-- ARGV[2] stream ID of the order entry (acknowledged in group ARGV[8])
-- ARGV[3] item_id
-- ARGV[4] user_id
-- ARGV[5] request_id
-- ARGV[6] quantity (integer >= 1)
-- ARGV[7] reason (free text, recorded in the event)
-- ARGV[8] consumer group name
-- ARGV[9] order time, unix milliseconds (copied into the event)
-- ARGV[10] sold-out lease, milliseconds: a restock that takes the stock from 0 to more sets
--          the rules' reopen_at to Redis TIME plus it (see purchase.lua)
--
-- The marker makes a second call for the same order a no-op apart from the XACK. An order
-- that expired or was cancelled by its buyer has its units back already: it is only marked and
-- acknowledged (code 1); a reserved or paid one becomes cancelled and leaves the due set.
--
-- Returns {code, stock}:
--   0 restocked          stock after giving the units back
--   1 already restocked  current stock (nothing changed but the XACK)

local state = KEYS[5] and redis.call('HGET', KEYS[5], 'state')
if redis.call('SET', KEYS[4], ARGV[2], 'NX') == false or state == 'expired' or state == 'cancelled' then
  redis.call('XACK', KEYS[3], ARGV[8], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
if state then
  redis.call('HSET', KEYS[5], 'state', 'cancelled')
  redis.call('ZREM', KEYS[6], ARGV[1])
end

-- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.
local quantity = tonumber(ARGV[6])
local units = string.format('%d', quantity)
local stock = redis.call('INCRBY', KEYS[1], units)
local bought = tonumber(redis.call('GET', KEYS[2]) or '0')
if bought > quantity then
  redis.call('DECRBY', KEYS[2], units)
elseif bought > 0 then
  redis.call('DEL', KEYS[2])
end
redis.call('XADD', KEYS[3], '*',
  'v', '1', 'type', 'restock', 'order_id', ARGV[1], 'item_id', ARGV[3],
  'user_id', ARGV[4], 'request_id', ARGV[5], 'quantity', units,
  'reason', ARGV[7], 'ts', ARGV[9])
redis.call('XACK', KEYS[3], ARGV[8], ARGV[2])
if stock - quantity <= 0 and stock > 0 then
  local t = redis.call('TIME')
  local reopen_at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[10])
  reopen_at = math.max(reopen_at, tonumber(redis.call('HGET', KEYS[7], 'reopen_at') or '0'))
  redis.call('HSET', KEYS[7], 'reopen_at', string.format('%d', reopen_at))
end
return {0, stock}
