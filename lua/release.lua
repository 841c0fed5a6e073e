-- release.lua: the one release of a reserved order's units, shared by cancel.lua and expire.lua
-- (package lua joins this fragment in front of each; it is not a script of its own). It uses
-- the caller's KEYS[1..6] and ARGV[1] as both scripts name them:
--
-- KEYS[1] order state, KEYS[2] payment deadlines, KEYS[3] ledger stream, KEYS[4] stock counter,
-- KEYS[5] per-user counts, KEYS[6] sale rules; ARGV[1] order_id.
--
-- release(o, state, now, lease): o is the order's HMGET of state, item_id, user_id, quantity,
-- request_id, pay_by, ts; state is the new state and the event's type ('cancelled' or
-- 'expired'); now is Redis TIME in unix ms; lease the sold-out lease in ms. The state becomes
-- state (closed_at now), the order leaves the due set, the units come back (give_back,
-- units.lua, joined in front of this fragment) and the event is appended. Returns {0, state,
-- stock after}.
local function release(o, state, now, lease)
  -- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.
  local ts = string.format('%d', now)
  local quantity = tonumber(o[4])
  redis.call('HSET', KEYS[1], 'state', state, 'closed_at', ts)
  redis.call('ZREM', KEYS[2], ARGV[1])
  local stock = give_back(KEYS[4], KEYS[5], o[3], KEYS[6], quantity, now, lease)
  redis.call('XADD', KEYS[3], '*',
    'v', '1', 'type', state, 'order_id', ARGV[1], 'item_id', o[2], 'user_id', o[3],
    'request_id', o[5], 'quantity', string.format('%d', quantity), 'order_ts', o[7], 'pay_by', o[6], 'ts', ts)
  return {0, state, stock}
end
