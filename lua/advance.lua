-- advance.lua: moves a consumer group's last delivered ID forward to an ID, never back, without
-- delivering the entries to any consumer (no pending entries, nothing per entry in the AOF).
-- group_info (groups.lua) is joined in front of it.
-- The archiver's group is moved this way once per segment written: its position then says
-- "archived through", as retain.lua reads it.
--
-- KEYS[1] ledger stream      <prefix>:{pN}:events
--
-- ARGV[1] group name
-- ARGV[2] stream ID to move to (ms-seq); a position past the stream's last entry moves the
--         group to that last entry only
-- ARGV[3] most entries after the new position that are counted to keep the group's
--         entries-read counter (and so XINFO's lag) exact; with more, Redis reports the lag
--         as unknown until a later move counts it
--
-- Returns {code, last_delivered_id}:
--   0 moved           the group's new last delivered ID
--   1 not moved       its last delivered ID, already at or past the position
--   2 no such group   ''

local function pos(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
-- before(a, b): stream ID a is before b.
local function before(a, b)
  local am, as = pos(a)
  local bm, bs = pos(b)
  return am < bm or (am == bm and as < bs)
end

local g = group_info(KEYS[1], ARGV[1])
if not g then
  return {2, ''}
end
local delivered = g['last-delivered-id']

local info = redis.call('XINFO', 'STREAM', KEYS[1])
local s = {}
for i = 1, #info, 2 do
  s[info[i]] = info[i + 1]
end
local to = ARGV[2]
if before(s['last-generated-id'], to) then
  to = s['last-generated-id']
end
if not before(delivered, to) then
  return {1, delivered}
end
local cap = tonumber(ARGV[3])
local after = redis.call('XRANGE', KEYS[1], '(' .. to, '+', 'COUNT', cap + 1)
if #after <= cap then
  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], to, 'ENTRIESREAD', s['entries-added'] - #after)
else
  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], to)
end
return {0, to}
