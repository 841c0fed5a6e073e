-- units.lua: the one give-back of sold units, shared by restock.lua, cancel.lua and expire.lua
-- (package lua joins this fragment in front of each; it is not a script of its own). Every
-- unit that comes back to an item comes back here, so that the stock counter, the per-user
-- counts and the sold-out lease agree.
--
-- give_back(stock_key, users_key, user, rules_key, quantity, now, lease): INCRBY the stock
-- counter stock_key by quantity; user's count in the per-user counts hash users_key loses the
-- units (the field deleted when it has no more); units given back to an item at no stock set
-- the rules' (rules_key) reopen_at to now (unix ms; Redis TIME when nil) plus lease
-- milliseconds, never earlier than it was (see purchase.lua). Returns the stock after. Numbers are written as integers (string.format
-- '%d'), never as tostring's 1e+14.
local function give_back(stock_key, users_key, user, rules_key, quantity, now, lease)
  local units = string.format('%d', quantity)
  local stock = redis.call('INCRBY', stock_key, units)
  local bought = tonumber(redis.call('HGET', users_key, user) or '0')
  if bought > quantity then
    redis.call('HINCRBY', users_key, user, '-' .. units)
  elseif bought > 0 then
    redis.call('HDEL', users_key, user)
  end
  if stock - quantity <= 0 and stock > 0 then
    if not now then
      local t = redis.call('TIME')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    local reopen_at = math.max(now + tonumber(lease), tonumber(redis.call('HGET', rules_key, 'reopen_at') or '0'))
    redis.call('HSET', rules_key, 'reopen_at', string.format('%d', reopen_at))
  end
  return stock
end
