-- retain.lua: reads at one instant what bounds the trimming of one partition (read only): the
-- stream's first entry and length, the latest checkpoint, and for each consumer group named the
-- position through which it has acknowledged everything.
--
-- KEYS[1] ledger stream      <prefix>:{pN}:events
-- KEYS[2] checkpoint hash    <prefix>:{pN}:checkpoint (field id: the stream ID folded through)
--
-- ARGV[1..n] consumer group names
--
-- Returns {0, now_ms, first_id, length, checkpoint_id, g_1..., g_n...} where each group gives
-- three values: exists (1 or 0), last_delivered_id, lowest pending ID ("" when none pending).
-- first_id is the first entry after the checkpoint (a trim keeps the entry at the checkpoint);
-- first_id and checkpoint_id are "" when absent.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local checkpoint = redis.call('HGET', KEYS[2], 'id') or ''
local first, length = '', 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  length = redis.call('XLEN', KEYS[1])
  local from = '-'
  if checkpoint ~= '' then
    from = '(' .. checkpoint -- the entry at the checkpoint stays in the stream, folded
  end
  local head = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 1)
  if #head > 0 then
    first = head[1][1]
  end
end
local out = {0, string.format('%d', now), first, length, checkpoint}

local groups = {}
local info = redis.pcall('XINFO', 'GROUPS', KEYS[1]) -- an error when the stream is absent
if type(info) == 'table' and not info.err then
  for _, g in ipairs(info) do
    local f = {}
    for i = 1, #g, 2 do
      f[g[i]] = g[i + 1]
    end
    groups[f['name']] = f
  end
end
for i = 1, #ARGV do
  local g = groups[ARGV[i]]
  if g then
    local lower = ''
    if tonumber(g['pending']) > 0 then
      local sum = redis.call('XPENDING', KEYS[1], ARGV[i])
      lower = sum[2] or ''
    end
    out[#out + 1] = 1
    out[#out + 1] = g['last-delivered-id']
    out[#out + 1] = lower
  else
    out[#out + 1] = 0
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
