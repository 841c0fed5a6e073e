-- layout.lua: moves per-key idempotency keys and per-user counters of one partition into their
-- item's hashes (the layout purchase.lua reads), each key at most once: a key already moved is
-- gone, so any number of processes may move the same keys at once.
--
-- ARGV[1]      'req' or 'user': the kind of every key of the call
-- KEYS[i]      a key of the older layout, of one partition, of that kind:
--              <prefix>:{pN}:req:<item>:<request_id>   (string '<order_id>|<user_id>', with TTL)
--              <prefix>:{pN}:user:<item>:<user_id>     (string, units bought)
-- ARGV[2i]     the hash it moves into: <prefix>:{pN}:requests:<item> or <prefix>:{pN}:users:<item>
-- ARGV[2i + 1] its field: the request_id or the user_id
--
-- A request_id keeps its value (one the hash already holds wins) and the hash's expiry becomes
-- at least the key's remaining TTL; a count is added to the user's count. Returns the number of
-- keys moved.
local moved = 0
for i, key in ipairs(KEYS) do
  local hash, field = ARGV[2 * i], ARGV[2 * i + 1]
  local v = redis.call('GET', key)
  if v then
    if ARGV[1] == 'req' then
      local ttl = redis.call('PTTL', key)
      redis.call('HSETNX', hash, field, v)
      local left = redis.call('PTTL', hash)
      if ttl > 0 and (left < 0 or left < ttl) then
        redis.call('PEXPIRE', hash, ttl)
      end
    else
      redis.call('HINCRBY', hash, field, v)
    end
    redis.call('DEL', key)
    moved = moved + 1
  end
end
return moved
