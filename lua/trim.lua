-- trim.lua: records a partition's new checkpoint and trims the stream up to it, in one call, so
-- that no entry leaves the stream unless the checkpoint in Redis has folded it. The entry at the
-- checkpoint itself is kept (MINID is its ID): an archive that ends at it still joins the
-- retained stream without a gap (see Ledger.TrimmedPast). Two trimmers
-- racing cannot move the checkpoint back: the call names the checkpoint it folded from.
--
-- KEYS[1] checkpoint hash    <prefix>:{pN}:checkpoint (fields id, data)
-- KEYS[2] ledger stream      <prefix>:{pN}:events
--
-- ARGV[1] the checkpoint ID the new one was folded from ("" for none)
-- ARGV[2] the new checkpoint's ID: the last stream ID it folded
-- ARGV[3] the new checkpoint's data
-- ARGV[4] XTRIM MINID threshold: ARGV[2] (entries before it are trimmed, it stays)
--
-- Returns {code, n}:
--   0 ok        entries trimmed
--   1 moved     0 (the checkpoint is no longer ARGV[1]: another trimmer went first; nothing done)

if (redis.call('HGET', KEYS[1], 'id') or '') ~= ARGV[1] then
  return {1, 0}
end
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'data', ARGV[3])
local n = redis.call('XTRIM', KEYS[2], 'MINID', ARGV[4])
return {0, n}
