-- lease.lua: takes, renews or gives up a lease that one holder at a time may hold (the
-- archiver of a partition). A lease not renewed within its TTL lapses and anyone may take it.
--
-- KEYS[1]  the lease key (string: the holder's name, with a TTL)
-- ARGV[1]  the holder's name
-- ARGV[2]  TTL in milliseconds; 0 gives the lease up
--
-- Returns 1 when the lease is (now) the caller's, or was given up by its holder; 0 when
-- another holder has it (nothing is changed).
local cur = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if cur == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
end
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
