-- draw_batch.lua: writes one batch of a draw's result, atomically and exactly once. The draw
-- is computed outside Redis (ranks from the seed, see ledger.RunDraw); every process computes
-- the same result, and this script accepts a batch only at the position the draw has reached,
-- so that any number of drawing processes, and a process restarted after a crash, write each
-- entry's outcome once.
--
-- KEYS[1] draw state         <prefix>:{pN}:draw:<item>      (hash: cursor, units, done, head_rank)
-- KEYS[2] sale rules         <prefix>:{pN}:rules:<item>
-- KEYS[3] stock counter      <prefix>:{pN}:stock:<item>
-- KEYS[4] ledger stream      <prefix>:{pN}:events
-- KEYS[5] payment deadlines  <prefix>:{pN}:due
-- KEYS[6] waitlist           <prefix>:{pN}:waitlist:<item>  (list: order_ids in rank order)
-- KEYS[7] held               <prefix>:{pN}:held:<item>      (set of the reserved winners)
-- KEYS[8] drawn items        <prefix>:{pN}:draws            (set of the items drawn)
--
-- ARGV[1] item_id
-- ARGV[2] cursor the batch starts at (entries already written, in rank order)
-- ARGV[3] units drawn (the stock when the draw began; checked against the state)
-- ARGV[4] seed commitment (hex SHA-256; must equal the rules' draw_commit)
-- ARGV[5] the revealed seed (hex), recorded in the rules as draw_seed
-- ARGV[6] order state key prefix <prefix>:{pN}:order:
-- ARGV[7] per-user counts   <prefix>:{pN}:users:<item>  (hash: user_id -> units)
-- ARGV[8] '1' if this batch is the last one
-- ARGV[9]  how many winners the batch holds (w), ARGV[10] the rank of its first waitlisted entry
-- ARGV[11..] six fields per winner: order_id, user_id, request_id, quantity, order_ts, rank
--         (0-based position in rank order); then the order_ids of the waitlisted entries, in
--         rank order
--
-- A won entry: its units are taken from the stock, its state becomes reserved with pay_by
-- (Redis TIME + the item's pay_within_ms), it joins the due set, the per-user counter and the
-- held set, and a `won` event is appended. A waitlisted one is appended to the waitlist and
-- nothing else: its state hash keeps state registered, which once the draw is done means
-- waitlisted (ledger.Reservation, draw_promote.lua), so that a call costs one list element
-- per waitlisted entry, not a write of its own. The waitlist is a list in rank order (the
-- batches come in rank order); head_rank in the draw state is the rank of its head, set by
-- the first batch that waitlists. One `waitlisted` event per batch lists the batch's waitlisted
-- entries (orders, comma separated, from rank).
--
-- Returns {code, cursor}:
--   0 written        the cursor after the batch
--   1 done           the final cursor (the draw was finished before)
--   2 elsewhere      the current cursor (another process wrote this batch; go on from there)
--   3 not due        0 (Redis TIME is before draw_at_ms)
--   4 commitment     0 (the commitment or the units differ from the draw's)

local st = redis.call('HMGET', KEYS[1], 'cursor', 'units', 'done')
local cursor = tonumber(st[1]) or 0
if st[3] == '1' then
  return {1, cursor}
end
if cursor ~= tonumber(ARGV[2]) then
  return {2, cursor}
end
local rules = redis.call('HMGET', KEYS[2], 'draw_at_ms', 'draw_commit', 'pay_within_ms')
if rules[2] ~= ARGV[4] or (st[2] and st[2] ~= ARGV[3]) then
  return {4, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < (tonumber(rules[1]) or 0) then
  return {3, 0}
end
if not st[2] then
  redis.call('HSET', KEYS[1], 'units', ARGV[3], 'started_at', string.format('%d', now))
  redis.call('HSET', KEYS[2], 'draw_seed', ARGV[5])
end

-- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.
local ts = string.format('%d', now)
local pay_by = string.format('%d', now + (tonumber(rules[3]) or 0))
local winners = tonumber(ARGV[9])
local last_winner = 10 + 6 * winners
for i = 11, last_winner, 6 do
  local id, user, req, units, ots, rank = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  redis.call('HSET', ARGV[6] .. id, 'state', 'reserved', 'pay_by', pay_by)
  redis.call('ZADD', KEYS[5], pay_by, id)
  redis.call('DECRBY', KEYS[3], units)
  redis.call('HINCRBY', ARGV[7], user, units)
  redis.call('SADD', KEYS[7], id)
  redis.call('XADD', KEYS[4], '*', 'v', '1', 'type', 'won', 'order_id', id,
    'item_id', ARGV[1], 'user_id', user, 'request_id', req, 'quantity', units,
    'order_ts', ots, 'pay_by', pay_by, 'rank', rank, 'ts', ts)
end
-- The waitlisted entries of a batch have consecutive ranks (every winner ranks before every
-- waitlisted entry): RPUSHes of up to 1000 (unpack is bounded by Lua's C stack) and one event
-- carry them all.
local waiting = #ARGV - last_winner
for i = last_winner + 1, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[6], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if waiting > 0 then
  redis.call('HSETNX', KEYS[1], 'head_rank', ARGV[10])
  redis.call('XADD', KEYS[4], '*', 'v', '1', 'type', 'waitlisted', 'item_id', ARGV[1],
    'rank', ARGV[10], 'orders', table.concat(ARGV, ',', last_winner + 1, #ARGV), 'ts', ts)
end
local n = winners + waiting
cursor = cursor + n
redis.call('HSET', KEYS[1], 'cursor', string.format('%d', cursor))
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1', 'done_at', ts)
  redis.call('SADD', KEYS[8], ARGV[1])
end
return {0, cursor}
