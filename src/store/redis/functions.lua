#!lua name=buyline
-- buyline's stock and holds in Redis: one library of functions, each of which makes its whole
-- decision atomically (Redis runs one function at a time) against the server's own clock.
--
-- The key layout is documented key by key in keys.rs; the Rust client builds the keys it passes
-- in KEYS, and the functions build a product's other keys from the product id (they all share
-- the product's `{product}` hash tag, so they live in one Cluster slot).
--
-- Every reply is an array whose first element says what happened: 'reserved', 'sold_out', ...
-- (the contract's error codes), followed by that outcome's values. Counts and times are
-- integers (times in milliseconds since the Unix epoch).
--
-- Invariants, for every product after every function: available + held + sold = total (the
-- opening stock plus every restock), no count below zero, and `version` grows by one with
-- every change. `save_counts` checks them before it writes: a broken one is an error and
-- writes nothing of that change.
--
-- Clock: ARGV[1] of every function that reads the time is '' (the server's TIME) or, in
-- tests only, a pinned time in milliseconds.

-- Bump this with every change to the functions' keys, arguments or replies.
local VERSION = 3

-- How long an expired hold is remembered, so that a checkout just after expiry hears
-- `reservation_expired` rather than `reservation_not_found` (the local engine keeps 60 s).
local RETENTION_MS = 60000
-- Most members of a product's due index (each one batch's holds) one call expires: bounds the
-- time one function runs (at most EXPIRE_MEMBERS * MAX_BATCH holds).
local EXPIRE_MEMBERS = 8
-- Most units a product holds, as in the local engine (a u32).
local MAX_UNITS = 4294967295
-- The channel every stock change is published on.
local STOCK_CHANNEL = 'bl:stock'
-- Every product ever opened (for the expiry sweep of every node).
local PRODUCTS = 'bl:products'
-- The orders stream keeps about this many entries (orders themselves stay in bl:order:*).
local ORDERS_STREAM_MAXLEN = '1000000'
-- The holds being charged through the gateway, scored by when the sweep may next look at them.
local CHARGING = 'bl:charging'
-- Most orders one page returns, and most markers one sweep claims.
local MAX_PAGE = 1000
-- Most reservations one `buyline_reserve` call decides (the node's `MAX_BATCH`): bounds the
-- time one call runs and the arguments `unpack` spreads.
local MAX_BATCH = 128

local function now_ms(pinned)
  if pinned ~= nil and pinned ~= '' then
    return tonumber(pinned)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function product_key(p) return 'bl:{' .. p .. '}:product' end
local function due_key(p) return 'bl:{' .. p .. '}:due' end
local function hold_key(p, id) return 'bl:{' .. p .. '}:hold:' .. id end
local function units_key(p) return 'bl:{' .. p .. '}:units' end
local function keys_due_key(p) return 'bl:{' .. p .. '}:idem-due' end
local function locator_key(id) return 'bl:hold:' .. id end
local function order_key(id) return 'bl:order:' .. id end
local function charging_key(id) return 'bl:charging:' .. id end

-- A hold is one string under its locator `bl:hold:ID`:
-- 'PRODUCT|STATE|QUANTITY|EXPIRES_AT|COUNTED|CUSTOMER' (STATE 'held' or 'expired', COUNTED '1'
-- when its units count toward the product's limit; the customer id last, since it may hold
-- '|'; product ids never do). One key a hold, so that a batch writes all its holds with one
-- MSET, and release and checkout, which name only the hold, find everything with one GET.
local function pack_hold(p, state, q, expires_at, counted, customer)
  return p .. '|' .. state .. '|' .. q .. '|' .. expires_at .. '|' .. counted .. '|' .. customer
end

-- Hold `id`: its product and its fields, or nil (no hold, or a product but no hold). Version 2
-- of the library kept the product alone under the locator and the hold as a hash
-- `bl:{P}:hold:ID`; a hold made before an upgrade is read from there (`v2` marks it, so
-- whatever ends it deletes that hash too).
local function get_hold(id)
  local v = redis.call('GET', locator_key(id))
  if not v then
    return nil, nil
  end
  local p, state, q, expires_at, counted, customer =
    string.match(v, '^([^|]+)|(%a+)|(%d+)|(%d+)|([01])|(.*)$')
  if p then
    return p, { state = state, q = tonumber(q), expires_at = tonumber(expires_at),
      counted = counted, customer = customer }
  end
  if string.find(v, '|', 1, true) then
    return error('buyline: a hold value of another shape')
  end
  local h = redis.call('HMGET', hold_key(v, id), 'state', 'quantity', 'expires_at', 'counted',
    'customer')
  if not h[1] then
    return v, nil
  end
  return v, { state = h[1], q = tonumber(h[2]), expires_at = tonumber(h[3]), counted = h[4],
    customer = h[5], v2 = true }
end

-- Deletes hold `id` (released or sold).
local function delete_hold(p, id, h)
  if h.v2 then
    redis.call('DEL', locator_key(id), hold_key(p, id))
  else
    redis.call('DEL', locator_key(id))
  end
end

-- A reservation idempotency key's value: 'FINGERPRINT|AT|QUANTITY|EXPIRES_AT|HOLD'.
local function read_key(v)
  local fp, at, q, expires_at, hold = string.match(v, '^(%x+)|(%d+)|(%d+)|(%d+)|(.+)$')
  if not fp then
    return error('buyline: an idempotency key value of another shape')
  end
  return { fp = fp, at = tonumber(at), q = tonumber(q), expires_at = tonumber(expires_at),
    hold = hold }
end

-- Appends `order_id` to an order list (a sorted set scored by position: 1, 2, ...), unless it
-- is there. Orders never leave a list, so its size is its last position.
local function list_order(list, order_id)
  redis.call('ZADD', list, 'NX', redis.call('ZCARD', list) + 1, order_id)
end

-- A product's counts and rules, or nil when it was never opened. `holds` (live holds) was
-- not kept by version 2 of the library, whose due index held one live hold a member.
local function load_product(pk, p)
  local v = redis.call('HMGET', pk, 'available', 'held', 'sold', 'total', 'version',
    'limit', 'hold_ms', 'starts_at', 'ends_at', 'open', 'holds')
  if not v[4] then
    return nil
  end
  local holds = tonumber(v[11])
  if not holds and p then
    holds = redis.call('ZCARD', due_key(p))
  end
  return {
    available = tonumber(v[1]), held = tonumber(v[2]), sold = tonumber(v[3]),
    total = tonumber(v[4]), version = tonumber(v[5]),
    limit = tonumber(v[6]) or 0, hold_ms = tonumber(v[7]) or 120000,
    starts_at = tonumber(v[8]), ends_at = tonumber(v[9]), open = v[10] == '1', holds = holds,
  }
end

-- Writes a product's counts after checking the invariants, and publishes them.
local function save_counts(p, pk, s)
  if s.available < 0 or s.held < 0 or s.sold < 0 then
    return error('buyline: a count of ' .. p .. ' would go below zero')
  end
  if s.available + s.held + s.sold ~= s.total or s.total > MAX_UNITS then
    return error('buyline: the counts of ' .. p .. ' would not add up')
  end
  if s.holds < 0 or (s.holds == 0) ~= (s.held == 0) then
    return error('buyline: the live holds of ' .. p .. ' would not match its held units')
  end
  redis.call('HSET', pk, 'available', s.available, 'held', s.held, 'sold', s.sold,
    'total', s.total, 'version', s.version, 'holds', s.holds)
  redis.call('PUBLISH', STOCK_CHANNEL, cjson.encode({
    product = p, available = s.available, held = s.held, sold = s.sold,
    total = s.total, version = s.version,
  }))
end

-- Takes `q` units off a customer's count (a limited product's); drops the field at zero.
local function give_back_units(p, customer, q)
  local left = redis.call('HINCRBY', units_key(p), customer, -q)
  if left <= 0 then
    redis.call('HDEL', units_key(p), customer)
  end
end

-- Ends the product's holds due at `now`: their units go back to available, and each is kept,
-- as expired, for RETENTION_MS after its expiry. A member of the due index is the ids of one
-- batch's holds (they expire together), space-separated; a released or sold hold stays in its
-- member and is skipped. Takes at most EXPIRE_MEMBERS members (so at most EXPIRE_MEMBERS *
-- MAX_BATCH holds). Returns how many holds it ended, and whether members may remain due.
local function expire_product(p, pk, s, now)
  local dk = due_key(p)
  local due = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, EXPIRE_MEMBERS)
  if #due == 0 then
    return 0, false
  end
  local holds = {}
  for _, member in ipairs(due) do
    for id in string.gmatch(member, '%S+') do
      local _, h = get_hold(id)
      if h and h.state == 'held' then
        s.available = s.available + h.q
        s.held = s.held - h.q
        s.holds = s.holds - 1
        s.version = s.version + 1
        h.id = id
        holds[#holds + 1] = h
      end
    end
  end
  if #holds > 0 then
    save_counts(p, pk, s)
  end
  for _, h in ipairs(holds) do
    if h.counted == '1' then
      give_back_units(p, h.customer, h.q)
    end
    -- Kept at least a minute of Redis's time, however late the sweep ran: the function's
    -- own clock check decides `reservation_expired`; the TTL only frees the memory.
    local keep = h.expires_at + RETENTION_MS - now
    if keep < RETENTION_MS then
      keep = RETENTION_MS
    end
    redis.call('SET', locator_key(h.id),
      pack_hold(p, 'expired', h.q, h.expires_at, h.counted, h.customer), 'PX', keep)
    if h.v2 then
      redis.call('DEL', hold_key(p, h.id))
    end
  end
  redis.call('ZREM', dk, unpack(due))
  return #holds, #due == EXPIRE_MEMBERS
end

-- Forgets the idempotency keys of the product's batches whose window has ended (at most
-- EXPIRE_MEMBERS batches). A member of the keys' due index, scored by the end of the window,
-- is the batch's time then each key as 'LENGTH:KEY' (keys may hold any byte). A key still
-- holding the record its batch wrote (first used at the batch's time) is deleted; one written
-- again since (after its window, by a later batch) is left to that batch. Returns whether
-- members may remain due.
local function forget_keys(p, now)
  local kd = keys_due_key(p)
  local due = redis.call('ZRANGEBYSCORE', kd, '-inf', now, 'LIMIT', 0, EXPIRE_MEMBERS)
  if #due == 0 then
    return false
  end
  for _, member in ipairs(due) do
    local at, pos = string.match(member, '^(%d+) ()')
    if not at then
      return error('buyline: a member of the keys\' due index of another shape')
    end
    local names = {}
    while pos <= #member do
      local colon = string.find(member, ':', pos, true)
      local length = colon and tonumber(string.sub(member, pos, colon - 1))
      if not length then
        return error('buyline: a member of the keys\' due index of another shape')
      end
      names[#names + 1] = string.sub(member, colon + 1, colon + length)
      pos = colon + length + 1
    end
    local found = redis.call('MGET', unpack(names))
    local ended = {}
    for i, name in ipairs(names) do
      local v = found[i]
      if v and string.match(v, '^%x+|(%d+)|') == at then
        ended[#ended + 1] = name
      end
    end
    if #ended > 0 then
      redis.call('DEL', unpack(ended))
    end
  end
  redis.call('ZREM', kd, unpack(due))
  return #due == EXPIRE_MEMBERS
end

-- One reservation of a batch (see `reserve`), decided exactly as a call of its own would be:
-- the idempotency key (one used earlier in the batch included), the product, the sale window,
-- the per-customer limit, the stock. Changes `s` and queues the hold's writes in `batch`.
local function reserve_one(p, s, now, batch, customer, q_text, id, fp, ik)
  local q = tonumber(q_text)
  if ik then
    local k = batch.keys[ik]
    if k then
      if k.fp ~= fp then
        return { 'idempotency_mismatch' }
      end
      local remaining = 0
      if s then
        remaining = s.available
      end
      return { 'replayed', k.hold, k.q, k.expires_at, remaining }
    end
  end
  if not s or not s.open then
    return { 'not_found' }
  end
  if s.starts_at and now < s.starts_at then
    return { 'sale_not_started', s.starts_at }
  end
  if s.ends_at and now >= s.ends_at then
    return { 'sale_ended', s.ends_at }
  end
  local units = 0
  if s.limit > 0 then
    units = batch.units[customer]
    if units == nil then
      units = tonumber(redis.call('HGET', units_key(p), customer)) or 0
    end
    if units + q > s.limit then
      return { 'limit_exceeded', s.limit, units }
    end
  end
  if s.available == 0 then
    return { 'sold_out' }
  end
  if s.available < q then
    return { 'insufficient_stock', s.available }
  end
  s.available = s.available - q
  s.held = s.held + q
  s.holds = s.holds + 1
  s.version = s.version + 1
  -- Every hold of a batch expires at the same time (one clock, one product's hold time).
  local expires_at = batch.expires_at
  local counted = '0'
  if s.limit > 0 then
    counted = '1'
    batch.units[customer] = units + q
    batch.added[customer] = (batch.added[customer] or 0) + q
  end
  local holds, due = batch.holds, batch.due
  holds[#holds + 1] = locator_key(id)
  holds[#holds + 1] = pack_hold(p, 'held', q_text, batch.expires_text, counted, customer)
  due[#due + 1] = id
  if ik then
    batch.keys[ik] = { fp = fp, hold = id, q = q, expires_at = expires_at }
    batch.new_keys[#batch.new_keys + 1] = ik
  end
  -- The node knows the new hold's id and quantity, and the batch's reply carries its expiry.
  return s.available
end

-- Writes what a batch's reservations queued, once the product's counts are saved: every new
-- hold and idempotency key (one MSET), the holds' common expiry (one member of the due index),
-- when the keys' window ends (one member of the keys' due index: see `forget_keys`), and the
-- customers' units (limited products).
local function write_batch(p, batch, now, window)
  local writes = batch.holds
  if #batch.new_keys > 0 then
    local listed = { batch.now_text, ' ' }
    for _, ik in ipairs(batch.new_keys) do
      local k = batch.keys[ik]
      writes[#writes + 1] = ik
      writes[#writes + 1] = k.fp .. '|' .. batch.now_text .. '|' .. k.q .. '|' ..
        batch.expires_text .. '|' .. k.hold
      listed[#listed + 1] = #ik .. ':' .. ik
    end
    redis.call('ZADD', keys_due_key(p), now + window, table.concat(listed))
  end
  redis.call('MSET', unpack(writes))
  redis.call('ZADD', due_key(p), batch.expires_at, table.concat(batch.due, ' '))
  for customer, added in pairs(batch.added) do
    redis.call('HINCRBY', units_key(p), customer, added)
  end
end

-- Reserves for a batch of requests on one product. KEYS[1]: the product's key, then the
-- idempotency key of each request that has one. ARGV: now, product, key window (ms), then
-- five a request: customer, quantity, new hold id, request fingerprint, and the index in KEYS
-- of its idempotency key (0: none). Decides the requests in order, each exactly as one call of
-- its own would (a key used twice in the batch: the second is `replayed` or
-- `idempotency_mismatch`), but reads the clock, expires the product's due holds, loads and
-- saves its counts and publishes them once. Replies 'decided', the expiry of the batch's new
-- holds (0 if the product is unknown), then one reply a request: a new hold is just the units
-- available after it (an integer; the node knows its id and quantity), anything else an array:
-- 'replayed' with the hold id, quantity, expiry and units available now, or a refusal with its
-- values. Cost in Redis: about eight commands a batch (clock, counts, due
-- holds, idempotency keys, counts saved and published, holds and keys, the two due indexes),
-- and a limited product's customers' counts; `expire_due` later forgets the keys (a MGET and
-- a DEL a batch).
local function reserve(keys, args)
  local now = now_ms(args[1])
  local p, window = args[2], tonumber(args[3])
  local n = (#args - 3) / 5
  if n < 1 or n > MAX_BATCH or n ~= math.floor(n) then
    return error('buyline: a reserve batch of another shape')
  end
  local pk = keys[1]
  local s = load_product(pk, p)
  local batch = { keys = {}, new_keys = {}, units = {}, added = {}, holds = {}, due = {} }
  if s then
    expire_product(p, pk, s, now)
    batch.expires_at = now + s.hold_ms
    batch.expires_text = string.format('%d', batch.expires_at)
    batch.now_text = string.format('%d', now)
  end
  if #keys > 1 then
    local found = redis.call('MGET', unpack(keys, 2))
    for i = 2, #keys do
      local v = found[i - 1]
      if v then
        local k = read_key(v)
        if now < k.at + window then
          batch.keys[keys[i]] = k
        end
      end
    end
  end
  local replies = { 'decided', batch.expires_at or 0 }
  for i = 0, n - 1 do
    local a = 3 + i * 5
    local ik = nil
    local at = tonumber(args[a + 5])
    if at > 0 then
      ik = keys[at]
    end
    replies[#replies + 1] = reserve_one(p, s, now, batch, args[a + 1], args[a + 2], args[a + 3],
      args[a + 4], ik)
  end
  if #batch.due > 0 then
    -- The counts are checked before anything of the batch is written.
    save_counts(p, pk, s)
    write_batch(p, batch, now, window)
  end
  return replies
end

-- What release and confirm start with: the hold's product (through its locator, KEYS[1]),
-- that product's due holds expired first, then the customer's hold (nil if none, or
-- another customer's). Returns nil when the hold or its product is gone.
local function locate_hold(keys, args)
  local now = now_ms(args[1])
  local customer, id = args[2], args[3]
  local p = get_hold(id)
  if not p then
    return nil
  end
  local pk = product_key(p)
  local s = load_product(pk, p)
  if not s then
    return nil
  end
  expire_product(p, pk, s, now)
  -- Read again: the expiry may have just ended it.
  local _, h = get_hold(id)
  if h and h.customer ~= customer then
    h = nil
  end
  return { now = now, customer = customer, id = id, p = p, pk = pk, s = s, h = h }
end

-- KEYS[1]: the hold's locator. ARGV: now, customer, hold id.
local function release(keys, args)
  local at = locate_hold(keys, args)
  if not at then
    return { 'reservation_not_found' }
  end
  local now, customer, id, p, pk, s, h = at.now, at.customer, at.id, at.p, at.pk, at.s, at.h
  if not h or h.state ~= 'held' or now >= h.expires_at then
    return { 'reservation_not_found' }
  end
  s.available = s.available + h.q
  s.held = s.held - h.q
  s.holds = s.holds - 1
  s.version = s.version + 1
  save_counts(p, pk, s)
  if h.counted == '1' then
    give_back_units(p, customer, h.q)
  end
  -- Its id stays in its batch's member of the due index; the expiry skips it.
  delete_hold(p, id, h)
  return { 'released', s.available }
end

-- KEYS[1]: the hold's locator; with an order also KEYS[2] the order, KEYS[3] the buyer's
-- order list, KEYS[4] the partner's order list, KEYS[5] the orders stream and, with a
-- checkout idempotency key, KEYS[6] that key. ARGV: now, customer, hold id, then with an
-- order: its id and its bytes.
local function confirm(keys, args)
  local at = locate_hold(keys, args)
  if not at then
    return { 'reservation_not_found' }
  end
  local now, customer, id, p, pk, s, h = at.now, at.customer, at.id, at.p, at.pk, at.s, at.h
  if not h then
    return { 'reservation_not_found' }
  end
  if h.state == 'expired' or (h.state == 'held' and now >= h.expires_at) then
    if now < h.expires_at + RETENTION_MS then
      return { 'reservation_expired' }
    end
    return { 'reservation_not_found' }
  end
  if h.state ~= 'held' then
    return { 'reservation_not_found' }
  end
  s.held = s.held - h.q
  s.sold = s.sold + h.q
  s.holds = s.holds - 1
  s.version = s.version + 1
  save_counts(p, pk, s)
  -- Bought units always count toward a limit (one switched on later covers them too).
  if h.counted ~= '1' then
    redis.call('HINCRBY', units_key(p), customer, h.q)
  end
  delete_hold(p, id, h)
  -- Sold: its charge, if one was being made, is paid for and must never be refunded.
  redis.call('DEL', charging_key(id))
  redis.call('ZREM', CHARGING, id)
  if keys[2] then
    local order_id = args[4]
    redis.call('SET', keys[2], args[5])
    list_order(keys[3], order_id)
    list_order(keys[4], order_id)
    redis.call('XADD', keys[5], 'MAXLEN', '~', ORDERS_STREAM_MAXLEN, '*',
      'order', order_id, 'product', p, 'quantity', h.q)
    if keys[6] then
      redis.call('SET', keys[6], order_id)
    end
  end
  return { 'confirmed', p, h.q, s.available }
end

-- KEYS[1]: the hold's locator. ARGV: now, customer, hold id. Reads only.
local function hold_of(keys, args)
  local now = now_ms(args[1])
  local customer, id = args[2], args[3]
  local p, h = get_hold(id)
  if not h or h.customer ~= customer then
    return { 'reservation_not_found' }
  end
  if h.state == 'expired' or (h.state == 'held' and now >= h.expires_at) then
    if now < h.expires_at + RETENTION_MS then
      return { 'reservation_expired' }
    end
    return { 'reservation_not_found' }
  end
  if h.state ~= 'held' then
    return { 'reservation_not_found' }
  end
  return { 'held', p, h.q, h.expires_at }
end

-- KEYS[1]: the product's key. ARGV: now, product. Ends the product's due holds and forgets its
-- idempotency keys whose window ended. Returns how many holds it ended, and 1 if there may be
-- more of either due (0 if not).
local function expire_due(keys, args)
  local now = now_ms(args[1])
  local p, pk = args[2], keys[1]
  local s = load_product(pk, p)
  if not s then
    return { 'expired', 0, 0 }
  end
  local ended, more = expire_product(p, pk, s, now)
  if forget_keys(p, now) or more then
    return { 'expired', ended, 1 }
  end
  return { 'expired', ended, 0 }
end

-- KEYS[1]: the product's key. ARGV: now, product, units to add.
local function restock(keys, args)
  local now = now_ms(args[1])
  local p, pk, q = args[2], keys[1], tonumber(args[3])
  local s = load_product(pk, p)
  if not s or not s.open then
    return { 'not_found' }
  end
  expire_product(p, pk, s, now)
  if s.total + q > MAX_UNITS then
    return { 'restock_too_large', MAX_UNITS - s.total }
  end
  s.available = s.available + q
  s.total = s.total + q
  s.version = s.version + 1
  save_counts(p, pk, s)
  return { 'restocked', s.available }
end

-- KEYS[1]: the product's key. ARGV: product, opening stock, per-customer limit (0: none),
-- hold time (ms), sale start and end (ms; both '' for always on sale). A new product opens
-- with its stock; a known one (open or closed) gets the new rules, is opened again, and
-- keeps its counts.
local function product_upsert(keys, args)
  local p, pk = args[1], keys[1]
  local stock = tonumber(args[2])
  local rules = { 'limit', args[3], 'hold_ms', args[4], 'open', '1' }
  if args[5] ~= '' then
    rules[#rules + 1] = 'starts_at'
    rules[#rules + 1] = args[5]
    rules[#rules + 1] = 'ends_at'
    rules[#rules + 1] = args[6]
  end
  local known = redis.call('HEXISTS', pk, 'total') == 1
  redis.call('HDEL', pk, 'starts_at', 'ends_at')
  redis.call('HSET', pk, unpack(rules))
  if known then
    return { 'updated' }
  end
  save_counts(p, pk, { available = stock, held = 0, sold = 0, total = stock, version = 0,
    holds = 0 })
  redis.call('SADD', PRODUCTS, p)
  return { 'opened' }
end

-- KEYS[1]: the product's key. Closes the product to reservations and restocks; its holds end
-- normally and its counts stay.
local function product_delete(keys, args)
  if redis.call('HEXISTS', keys[1], 'total') == 0 then
    return { 'not_found' }
  end
  redis.call('HSET', keys[1], 'open', '0')
  return { 'closed' }
end

-- KEYS[1]: the product's key. Reads only.
local function counts(keys, args)
  local s = load_product(keys[1])
  if not s then
    return { 'not_found' }
  end
  local open = 0
  if s.open then
    open = 1
  end
  return { 'stock', s.available, s.held, s.sold, s.total, s.version, open }
end

-- KEYS[1]: an order list. ARGV: the id to start after ('' for the start), most orders.
-- Reads only. Replies 'page' then each order's id and bytes (nil if the bytes are missing),
-- oldest first; an `after` id not in the list gives an empty page. Cost: O(log n + limit).
local function orders_page(keys, args)
  local list, after, limit = keys[1], args[1], tonumber(args[2])
  if limit > MAX_PAGE then
    limit = MAX_PAGE
  end
  local from = '-inf'
  if after ~= '' then
    local at = redis.call('ZSCORE', list, after)
    if not at then
      return { 'page' }
    end
    from = '(' .. at
  end
  local reply = { 'page' }
  if limit <= 0 then
    return reply
  end
  local ids = redis.call('ZRANGE', list, from, '+inf', 'BYSCORE', 'LIMIT', 0, limit)
  for _, order_id in ipairs(ids) do
    reply[#reply + 1] = order_id
    reply[#reply + 1] = redis.call('GET', order_key(order_id))
  end
  return reply
end

-- KEYS[1]: the hold's locator, KEYS[2]: its charging marker, KEYS[3]: CHARGING. ARGV: now,
-- customer, hold id, the gateway's idempotency key, amount, currency. Marks the customer's
-- live hold as being charged (again, on a retry: the marker's time moves to now). A hold
-- that is not live gets no marker (a sold one must never look unsold).
local function mark_charging(keys, args)
  local now = now_ms(args[1])
  local customer, id = args[2], args[3]
  local _, h = get_hold(id)
  if not h or h.customer ~= customer then
    return { 'reservation_not_found' }
  end
  if h.state == 'expired' or (h.state == 'held' and now >= h.expires_at) then
    return { 'reservation_expired' }
  end
  if h.state ~= 'held' then
    return { 'reservation_not_found' }
  end
  redis.call('HSET', keys[2], 'key', args[4], 'amount', args[5], 'currency', args[6],
    'customer', customer, 'at', now)
  redis.call('ZADD', keys[3], now, id)
  return { 'marked', now }
end

-- KEYS[1]: CHARGING. ARGV: now, grace (ms), most markers. Claims the markers last touched
-- more than `grace` ago whose hold ended unsold: 'expired' (expired, or due) or 'gone'
-- (released, or expired and forgotten; a sold hold has no marker). A claim moves the marker's
-- score to now, so no other sweep sees it for another `grace`: it comes back only if the
-- claimer did not call `refunded` in that time. A marker whose hold is still live moves to its
-- hold's expiry, so live holds never fill a sweep's batch. Replies 'claimed' then six values a
-- marker: hold id, gateway key, amount, currency, customer, marked at, and how the hold ended.
local function charges_to_refund(keys, args)
  local now, grace, most = now_ms(args[1]), tonumber(args[2]), tonumber(args[3])
  if most > MAX_PAGE then
    most = MAX_PAGE
  end
  local reply = { 'claimed' }
  if most <= 0 then
    return reply
  end
  local ids = redis.call('ZRANGEBYSCORE', keys[1], '-inf', now - grace, 'LIMIT', 0, most)
  for _, id in ipairs(ids) do
    local mk = charging_key(id)
    local m = redis.call('HMGET', mk, 'key', 'amount', 'currency', 'customer', 'at')
    if not m[1] then
      redis.call('ZREM', keys[1], id)
    else
      local ended = 'gone'
      local live_until = nil
      local _, h = get_hold(id)
      if h and h.state == 'held' and now < h.expires_at then
        live_until = h.expires_at
      elseif h then
        ended = 'expired'
      end
      if live_until then
        redis.call('ZADD', keys[1], live_until - grace, id)
      else
        redis.call('ZADD', keys[1], now, id)
        redis.call('HINCRBY', mk, 'claims', 1)
        reply[#reply + 1] = id
        reply[#reply + 1] = m[1]
        reply[#reply + 1] = m[2]
        reply[#reply + 1] = m[3]
        reply[#reply + 1] = m[4]
        reply[#reply + 1] = m[5]
        reply[#reply + 1] = ended
      end
    end
  end
  return reply
end

-- KEYS[1]: a hold's charging marker, KEYS[2]: CHARGING. ARGV: the hold id. Forgets the marker
-- (its charge was refunded). Replies 'refunded' and 1, or 0 if there was no marker.
local function refunded(keys, args)
  local n = redis.call('DEL', keys[1])
  redis.call('ZREM', keys[2], args[1])
  return { 'refunded', n }
end

local function version(keys, args)
  return VERSION
end

redis.register_function{ function_name = 'buyline_version', callback = version,
  flags = { 'no-writes' } }
redis.register_function('buyline_reserve', reserve)
redis.register_function('buyline_release', release)
redis.register_function('buyline_confirm', confirm)
redis.register_function{ function_name = 'buyline_hold_of', callback = hold_of,
  flags = { 'no-writes' } }
redis.register_function('buyline_expire_due', expire_due)
redis.register_function('buyline_restock', restock)
redis.register_function('buyline_product_upsert', product_upsert)
redis.register_function('buyline_product_delete', product_delete)
redis.register_function{ function_name = 'buyline_counts', callback = counts,
  flags = { 'no-writes' } }
redis.register_function{ function_name = 'buyline_orders_page', callback = orders_page,
  flags = { 'no-writes' } }
redis.register_function('buyline_mark_charging', mark_charging)
redis.register_function('buyline_charges_to_refund', charges_to_refund)
redis.register_function('buyline_refunded', refunded)
