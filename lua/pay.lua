-- pay.lua: accepts the payment of a reserved order, atomically, at most once.
--
-- KEYS[1] order state        <prefix>:{pN}:order:<order_id>  (hash, see purchase.lua)
-- KEYS[2] payment deadlines  <prefix>:{pN}:due
-- KEYS[3] ledger stream      <prefix>:{pN}:events
--
-- ARGV[1] order_id
-- ARGV[2] payment_ref (1..128 bytes; validated by the caller)
-- ARGV[3] the paying user: only the order's own user may pay it (never '')
--
-- An order is paid if it is reserved and Redis TIME is before its pay_by: the state becomes
-- paid (payment_ref, paid_at), it leaves the due set and a `paid` event is appended. The
-- deadline is decided here, by the same clock as expire.lua's, so a payment and an expiry
-- racing at pay_by never both win. Paying again with the same payment_ref answers the same
-- success without writing anything: a retry after a lost reply is safe.
--
-- Returns {code, state, pay_by, paid_at}:
--   0 paid now          'paid', pay_by, paid_at
--   1 unknown           no state hash, or the order is another user's: nothing changed
--   2 already paid      'paid', pay_by, paid_at (same payment_ref: the same success)
--   3 paid otherwise    'paid', pay_by, paid_at (another payment_ref)
--   4 closed            'cancelled' or 'expired' (or 'reserved' past pay_by: expiring), pay_by, ''

local o = redis.call('HMGET', KEYS[1], 'state', 'pay_by', 'payment_ref', 'paid_at', 'user_id')
local state, pay_by = o[1], o[2]
if not state or o[5] ~= ARGV[3] then
  return {1, '', '', ''}
end
if state == 'paid' then
  if o[3] == ARGV[2] then
    return {2, state, pay_by, o[4]}
  end
  return {3, state, pay_by, o[4]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if state ~= 'reserved' or now >= tonumber(pay_by) then
  return {4, state, pay_by, ''}
end

-- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.
local paid_at = string.format('%d', now)
redis.call('HSET', KEYS[1], 'state', 'paid', 'payment_ref', ARGV[2], 'paid_at', paid_at)
redis.call('ZREM', KEYS[2], ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'item_id', 'user_id', 'request_id', 'quantity', 'ts')
redis.call('XADD', KEYS[3], '*',
  'v', '1', 'type', 'paid', 'order_id', ARGV[1], 'item_id', f[1], 'user_id', f[2],
  'request_id', f[3], 'quantity', f[4], 'order_ts', f[5], 'pay_by', pay_by,
  'payment_ref', ARGV[2], 'ts', paid_at)
return {0, 'paid', pay_by, paid_at}
