-- snapshot.lua: reads one partition at one instant, for audit: the stream's last entry, the
-- consumer group's position and the stock counters of the given items. Nothing is written.
-- group_info (groups.lua) is joined in front of it.
-- Every counter the ledger keeps changes in the same script call as the event that records
-- it, so the counters returned are exactly the fold of the stream up to the last ID returned.
--
-- KEYS[1]    ledger stream      <prefix>:{pN}:events
-- KEYS[2..n] stock counters     <prefix>:{pN}:stock:<item> (items of partition N only)
--
-- ARGV[1] consumer group name
--
-- Returns {0, last_id, group, pending, last_delivered, stock_2, ..., stock_n}:
--   last_id         ID of the stream's last entry, "" when the stream is empty or absent
--   group           1 when the group exists on the stream, else 0
--   pending         entries the group has delivered and not acknowledged (0 without group)
--   last_delivered  the group's last delivered ID ("" without group)
--   stock_i         the counter of KEYS[i] as stored, "" when absent

local last = ''
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then
  last = top[1][1]
end

local group, pending, delivered = 0, 0, ''
local g = group_info(KEYS[1], ARGV[1])
if g then
  group, pending, delivered = 1, g['pending'], g['last-delivered-id']
end

local out = {0, last, group, pending, delivered}
for i = 2, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i]) or ''
end
return out
