-- alive.lua: the projectors' heartbeats on one partition, by Redis's clock (so that the
-- clocks of the projectors' hosts do not matter).
--
-- KEYS[1] heartbeat set      <prefix>:{pN}:alive (sorted set: consumer -> expiry, unix ms)
--
-- ARGV[1] ttl in milliseconds: > 0 refreshes the consumers ARGV[2..] to expire ttl from now
--         and drops the expired ones; 0 only reads
-- ARGV[2..] consumer names (with a ttl)
--
-- Returns the consumers whose heartbeat has not expired (an array of names, possibly empty).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  local expiry = string.format('%d', now + ttl)
  for i = 2, #ARGV do
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
end
return redis.call('ZRANGE', KEYS[1], string.format('(%d', now), '+inf', 'BYSCORE')
