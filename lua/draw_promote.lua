-- draw_promote.lua: moves a drawn item on by one step, atomically: promotes the head of the
-- waitlist when units came back (a winner's reservation expired or was cancelled), or, once
-- every unit is paid, marks a batch of the waitlist lost. Any number of sweepers may call it
-- at once: each step is decided and written in one call, so it happens once.
--
-- KEYS[1] sale rules         <prefix>:{pN}:rules:<item>
-- KEYS[2] stock counter      <prefix>:{pN}:stock:<item>
-- KEYS[3] ledger stream      <prefix>:{pN}:events
-- KEYS[4] payment deadlines  <prefix>:{pN}:due
-- KEYS[5] waitlist           <prefix>:{pN}:waitlist:<item>  (list: order_ids in rank order)
-- KEYS[6] held               <prefix>:{pN}:held:<item>
-- KEYS[7] drawn items        <prefix>:{pN}:draws
-- KEYS[8] draw state         <prefix>:{pN}:draw:<item>      (head_rank: the waitlist head's rank)
--
-- ARGV[1] item_id
-- ARGV[2] order state key prefix <prefix>:{pN}:order:
-- ARGV[3] per-user counts   <prefix>:{pN}:users:<item>  (hash: user_id -> units)
-- ARGV[4] most entries marked lost in one call
--
-- An entry in the waitlist has state registered (draw_batch.lua writes no state for it) until
-- it is promoted, lost or restocked (then cancelled: it just leaves the waitlist). Entries
-- leave the waitlist from its head only, each moving head_rank on by one.
--
-- The head (lowest rank) is promoted if its quantity fits in the stock: state reserved with a
-- new pay_by, due set, per-user counter, held set, units taken, `promoted` event. If it does
-- not fit and no winner is still reserved (every held order is paid or closed; closed ones
-- leave the held set here), the units can no longer come back: up to ARGV[4] entries of the
-- waitlist get state lost, and one `lost` event lists them (orders, comma separated). An empty waitlist takes the item out of the
-- drawn set: what stock is left then is the draw's leftover.
--
-- Returns {code, order_id_or_count, stock}:
--   0 idle       0, stock (nothing to do now)
--   1 promoted   the promoted order_id, stock after it
--   2 lost       how many entries were marked lost, stock
--   3 finished   0, stock left over (waitlist empty; item left the drawn set)

local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local id = redis.call('LINDEX', KEYS[5], 0)
if not id then
  redis.call('SREM', KEYS[7], ARGV[1])
  return {3, 0, stock}
end
local okey = ARGV[2] .. id
local o = redis.call('HMGET', okey, 'state', 'user_id', 'request_id', 'quantity', 'ts')
if o[1] ~= 'registered' then
  redis.call('LPOP', KEYS[5])
  redis.call('HINCRBY', KEYS[8], 'head_rank', 1)
  return {0, 0, stock}
end
local quantity = tonumber(o[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ts = string.format('%d', now)
if quantity <= stock then
  local rank = redis.call('HGET', KEYS[8], 'head_rank')
  local pay_within = tonumber(redis.call('HGET', KEYS[1], 'pay_within_ms') or '0')
  local pay_by = string.format('%d', now + pay_within)
  local units = string.format('%d', quantity)
  redis.call('HSET', okey, 'state', 'reserved', 'pay_by', pay_by)
  redis.call('LPOP', KEYS[5])
  redis.call('HINCRBY', KEYS[8], 'head_rank', 1)
  redis.call('ZADD', KEYS[4], pay_by, id)
  local left = redis.call('DECRBY', KEYS[2], units)
  redis.call('HINCRBY', ARGV[3], o[2], units)
  redis.call('SADD', KEYS[6], id)
  redis.call('XADD', KEYS[3], '*', 'v', '1', 'type', 'promoted', 'order_id', id,
    'item_id', ARGV[1], 'user_id', o[2], 'request_id', o[3], 'quantity', units,
    'order_ts', o[5], 'pay_by', pay_by, 'rank', rank, 'ts', ts)
  return {1, id, left}
end

for _, held in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local s = redis.call('HGET', ARGV[2] .. held, 'state')
  if s == 'reserved' then
    return {0, 0, stock}
  end
  if s ~= 'paid' then
    redis.call('SREM', KEYS[6], held)
  end
end
local lost = redis.call('LPOP', KEYS[5], tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[8], 'head_rank', #lost)
local ids = {}
for _, lid in ipairs(lost) do
  local lkey = ARGV[2] .. lid
  if redis.call('HGET', lkey, 'state') == 'registered' then
    redis.call('HSET', lkey, 'state', 'lost', 'closed_at', ts)
    ids[#ids + 1] = lid
  end
end
if #ids > 0 then
  redis.call('XADD', KEYS[3], '*', 'v', '1', 'type', 'lost', 'item_id', ARGV[1],
    'orders', table.concat(ids, ','), 'ts', ts)
end
return {2, #ids, stock}
