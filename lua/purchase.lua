-- purchase.lua: decides the purchases of one call, one partition, each atomically and in order,
-- and appends the orders it placed to the ledger as one `orders` entry.
--
-- KEYS[1] ledger stream      <prefix>:{pN}:events
-- KEYS[2] payment deadlines  <prefix>:{pN}:due               (sorted set: order_id -> pay_by)
-- then four keys per item j = 0, 1, ... at KEYS[3 + 4j] .. KEYS[6 + 4j], each item once, in the
-- order of the item's first purchase in the call:
--   stock counter      <prefix>:{pN}:stock:<item>     (string, integer units left)
--   sale rules         <prefix>:{pN}:rules:<item>     (hash: limit, start_ms, end_ms,
--                                                      pay_within_ms, reopen_at, closed,
--                                                      draw_at_ms, requests_since,
--                                                      requests_old_until)
--   request IDs        <prefix>:{pN}:requests:<item>   (hash: request_id ->
--                                                      '<order_id>|<user_id>'; the previous
--                                                      generation is this key + ':old')
--   per-user counts    <prefix>:{pN}:users:<item>      (hash: user_id -> units bought)
--
-- ARGV[1] idempotency TTL in milliseconds (a request_id is remembered at least this long)
-- ARGV[2] partition number, the prefix of every order_id of this stream
-- ARGV[3] order state key prefix <prefix>:{pN}:order: (the order_id completes the key)
-- then four arguments per purchase at ARGV[4 + 4i] .. ARGV[7 + 4i]: item_id, user_id,
-- request_id, quantity (integer 1..100, validated by the caller)
--
-- Each purchase is decided as if it were alone, after the ones before it in the call: it sees
-- their writes. Checks, in order: unknown item, closed sale, duplicate request, draw item,
-- sale window, per-user limit, stock. An item that came back on sale after it was sold out is
-- refused as sold out until its reopen_at (unix ms, Redis TIME; written by the scripts that
-- give units back), whatever its stock: the sold-out lease that lets serving processes answer
-- sold out from memory. A refusal changes nothing and does not burn the request_id. A
-- request_id is answered as a duplicate only to the user who placed its order; any other user
-- (and everyone, for a value without '|' written before the owner was stored) gets code 7,
-- which does not reveal the order. Redis TIME is read once: the call's purchases are decided
-- at one instant.
--
-- A request_id is remembered in its item's request hash, in two generations: the call that
-- places an item's first order after requests_since (rules, unix ms) + TTL renames the hash to
-- its ':old' key with the TTL as expiry (dropping the generation before, written at least a
-- TTL ago) and sets requests_since to now and requests_old_until to now + TTL (until then the
-- old generation is read too); a call that writes the hash while its expiry is less than the
-- TTL away sets it to twice the TTL. So a request_id is remembered from its order for at least
-- the TTL and at most about twice it. The hashes are read once per item per call (HMGET of the
-- call's request_ids in each live generation, of its user_ids in the per-user counts), and
-- written once per item at the end (HSET of the new request_ids and of the new counts), with
-- the stock (DECRBY of the units the call sold); later purchases of the call see the earlier
-- ones' orders. An order placed under a pay-within rule also writes its state hash (state
-- reserved, pay_by, user_id, item_id, request_id, quantity, ts) and its place in the due set.
-- The orders share one stream entry, added last:
--   ID     <ms>-<last>: the orders' IDs are <ms>-<first> .. <ms>-<last>, consecutive, each
--          greater than the stream's last ID before the call; order_id = <partition>-<ID>
--   fields v 1, type orders, ts <order time, unix ms>, orders <the orders in ID order, each
--          item_id US user_id US request_id US quantity [US pay_by], joined by RS> (US = \31,
--          RS = \30: bytes no ID may hold). The fields are the same in every such entry, so
--          Redis stores their names once per stream node.
-- An error raised by one purchase (a key of the wrong type) is that purchase's reply and does
-- not stop the others; every key an item's writes touch is read when the item is first seen,
-- so a key of the wrong type fails its purchases before anything is written.
--
-- Returns one flat array of three elements per purchase, code, text, stock (one array, not an
-- array per purchase: Redis converts each table of a reply on its own, at a cost per table):
--   0 ok            order_id of the new order, stock left after it
--   1 unknown item  '', 0
--   2 duplicate     the original order_id, current stock
--   3 not started   '', current stock
--   4 ended         '', current stock
--   5 limit         '', current stock (the user would exceed the per-user limit)
--   6 sold out      '' or a stream ID, current stock (less than the quantity asked for, or
--                   reopen_at not reached yet); with no stock left, the stream ID: the item is
--                   sold out as of that ledger position ('' for a ledger that never had an entry)
--   7 taken         '', current stock (the request_id placed another user's order)
--   8 closed        '', current stock (the item's sale was closed, see close.lua)
--   9 draw          '', current stock: the item is sold by a draw (draw_enter.lua decides)
-- A purchase that raised an error has the error reply as its code, then '', 0.

local stream, due = KEYS[1], KEYS[2]
local ttl, part, state_prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Numbers are written as integers (string.format '%d'), never as tostring's 1e+14.
local ts = string.format('%d', now)

local keys_of = {}    -- item_id -> k: the item's keys are KEYS[k + 1] .. KEYS[k + 4]
local asked = {}      -- k -> {requests = the call's request_ids, users = its user_ids}
local items = {}      -- k -> the item's stock, rules, request_ids, counts and units sold: read
                      -- once per call
local entry_ms        -- the ms of the orders' IDs, a string, and the sequence number of the
local first           -- first: set by the first order, from the stream's last ID
local id_prefix       -- '<partition>-<entry_ms>-': with first + k, the orders' IDs
local placed = 0      -- orders placed so far
local records = {}    -- the entry's orders
local at_entry = {}   -- the purchases (0-based) answered sold out as of this call's entry
local quantities = {} -- quantity argument -> its number, converted once per call

-- last_id returns the stream's last ID: ms as a string and as a number, and seq as a number
-- ('0', 0, 0 for a new stream).
local function last_id()
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  local id = last and last[1]
  if not id and redis.call('EXISTS', stream) == 1 then
    -- Every entry trimmed: the next ID must still follow the last one ever added.
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then id = info[i + 1] end
    end
  end
  if not id then return '0', 0, 0 end
  local m, s = string.match(id, '^(%d+)-(%d+)$')
  return m, tonumber(m), tonumber(s)
end

-- fields reads names of hash key (HMGET) into a table name -> value (nil: no such field).
local function fields(key, names, into)
  local v = redis.call('HMGET', key, unpack(names))
  for i, name in ipairs(names) do
    if v[i] then into[name] = v[i] end
  end
  return into
end

-- item reads the stock, rules, request_ids and per-user counts of the item whose stock key is
-- KEYS[k + 1] once per call; nil for an unknown item.
local function item(k)
  local it = items[k]
  if it then return it end
  local stock = redis.call('GET', KEYS[k + 1])
  if not stock then return nil end
  local r = redis.call('HMGET', KEYS[k + 2], 'limit', 'start_ms', 'end_ms', 'pay_within_ms',
    'reopen_at', 'closed', 'draw_at_ms', 'requests_since', 'requests_old_until')
  local a, requests = asked[k], KEYS[k + 3]
  local reqs = {}
  if now < (tonumber(r[9]) or 0) then
    -- The older generation first: the newer one's value wins.
    fields(requests .. ':old', a.requests, reqs)
  end
  fields(requests, a.requests, reqs)
  local bought = fields(KEYS[k + 4], a.users, {})
  local pay_within = tonumber(r[4]) or 0
  it = {stock = tonumber(stock), sold = 0, limit = tonumber(r[1]) or 0,
    start_ms = tonumber(r[2]) or 0, end_ms = tonumber(r[3]) or 0,
    reopen_at = tonumber(r[5]) or 0, closed = r[6] == '1', draw = (tonumber(r[7]) or 0) > 0,
    since = tonumber(r[8]) or 0, reqs = reqs, bought = bought, new_reqs = {}, new_counts = {}}
  if pay_within > 0 then
    it.pay_by = string.format('%d', now + pay_within)
  end
  items[k] = it
  return it
end

-- decide decides purchase i (0-based) of the call, whose arguments follow ARGV[a], of the item
-- whose keys follow KEYS[k]: its code, text and stock (see Returns).
local function decide(i, k, a)
  local it = item(k)
  if not it then
    return 1, '', 0
  end
  local stock = it.stock
  if it.closed then
    return 8, '', stock
  end
  local user, request = ARGV[a + 2], ARGV[a + 3]
  local original = it.reqs[request]
  if original then
    local bar = string.find(original, '|', 1, true)
    if bar and string.sub(original, bar + 1) == user then
      return 2, string.sub(original, 1, bar - 1), stock
    end
    return 7, '', stock
  end
  if it.draw then
    return 9, '', stock
  end
  if it.start_ms > 0 and now < it.start_ms then
    return 3, '', stock
  end
  if it.end_ms > 0 and now >= it.end_ms then
    return 4, '', stock
  end
  -- The quantity is the caller's canonical decimal, written as it came.
  local units = ARGV[a + 4]
  local quantity = quantities[units]
  if not quantity then
    quantity = tonumber(units)
    quantities[units] = quantity
  end
  -- A user's first units: the count is the quantity, written as it came (no conversion).
  local prior, bought, count = it.bought[user]
  if prior then
    bought = tonumber(prior) + quantity
  else
    bought, count = quantity, units
  end
  if it.limit > 0 and bought > it.limit then
    return 5, '', stock
  end
  if stock < quantity or now < it.reopen_at then
    if stock == 0 then
      if it.sold > 0 then
        at_entry[#at_entry + 1] = i
        return 6, '', 0
      end
      local m, lm, ls = last_id()
      if lm > 0 or ls > 0 then
        return 6, m .. '-' .. ls, 0
      end
    end
    return 6, '', stock
  end

  if not id_prefix then
    local m, lm, ls = last_id()
    if now > lm then entry_ms, first = ts, 0 else entry_ms, first = m, ls + 1 end
    id_prefix = part .. '-' .. entry_ms .. '-'
  end
  local order_id = id_prefix .. string.format('%d', first + placed)
  local order = ARGV[a + 1] .. '\31' .. user .. '\31' .. request .. '\31' .. units
  if it.pay_by then
    redis.call('ZADD', due, it.pay_by, order_id)
    redis.call('HSET', state_prefix .. order_id, 'state', 'reserved', 'pay_by', it.pay_by,
      'user_id', user, 'item_id', ARGV[a + 1], 'request_id', request, 'quantity', units, 'ts', ts)
    order = order .. '\31' .. it.pay_by
  end
  local value = order_id .. '|' .. user
  it.reqs[request] = value
  it.new_reqs[#it.new_reqs + 1] = request
  it.new_reqs[#it.new_reqs + 1] = value
  it.bought[user] = count or string.format('%d', bought)
  -- A user placing two orders in one call appears twice: HSET keeps the later count.
  it.new_counts[#it.new_counts + 1] = user
  it.new_counts[#it.new_counts + 1] = it.bought[user]
  placed = placed + 1
  records[placed] = order
  it.stock, it.sold = stock - quantity, it.sold + quantity
  return 0, order_id, it.stock
end

if #ARGV < 7 or (#ARGV - 3) % 4 ~= 0 then
  return redis.error_reply('purchase.lua: ARGV must be 3 + 4 per purchase')
end
local n = (#ARGV - 3) / 4
-- Each item's keys, and the request_ids and user_ids it is asked for in this call, each once.
local k_next = 2
for i = 0, n - 1 do
  local item, user, request = ARGV[4 + 4 * i], ARGV[5 + 4 * i], ARGV[6 + 4 * i]
  local k = keys_of[item]
  if not k then
    k, k_next = k_next, k_next + 4
    keys_of[item] = k
    asked[k] = {requests = {}, users = {}, seen_request = {}, seen_user = {}}
  end
  local a = asked[k]
  if not a.seen_request[request] then
    a.seen_request[request] = true
    a.requests[#a.requests + 1] = request
  end
  if not a.seen_user[user] then
    a.seen_user[user] = true
    a.users[#a.users + 1] = user
  end
end
if k_next ~= #KEYS then
  return redis.error_reply('purchase.lua: KEYS must be 2 + 4 per item of the purchases')
end
local out = {}
for i = 0, n - 1 do
  local ok, code, text, stock = pcall(decide, i, keys_of[ARGV[4 + 4 * i]], 3 + 4 * i)
  if not ok then
    if type(code) ~= 'table' or not code.err then code = {err = tostring(code)} end
    text, stock = '', 0
  end
  out[3 * i + 1], out[3 * i + 2], out[3 * i + 3] = code, text, stock
end
if placed > 0 then
  for k, it in pairs(items) do
    if it.sold > 0 then
      local rules, requests = KEYS[k + 2], KEYS[k + 3]
      redis.call('DECRBY', KEYS[k + 1], string.format('%d', it.sold))
      redis.call('HSET', KEYS[k + 4], unpack(it.new_counts))
      if it.since == 0 or now - it.since >= ttl then
        if it.since > 0 and redis.call('EXISTS', requests) == 1 then
          redis.call('RENAME', requests, requests .. ':old')
          redis.call('PEXPIRE', requests .. ':old', ARGV[1])
          redis.call('HSET', rules, 'requests_since', ts,
            'requests_old_until', string.format('%d', now + ttl))
        else
          redis.call('HSET', rules, 'requests_since', ts)
        end
      end
      redis.call('HSET', requests, unpack(it.new_reqs))
      if redis.call('PTTL', requests) < ttl then
        redis.call('PEXPIRE', requests, string.format('%d', 2 * ttl))
      end
    end
  end
  local id = entry_ms .. '-' .. string.format('%d', first + placed - 1)
  redis.call('XADD', stream, id, 'v', '1', 'type', 'orders', 'ts', ts, 'orders', table.concat(records, '\30'))
  for _, i in ipairs(at_entry) do
    out[3 * i + 2] = id
  end
end
return out
