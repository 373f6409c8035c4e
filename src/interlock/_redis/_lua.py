"""The Redis side of interlock: one function library, loaded with FUNCTION LOAD.

Every step that must be atomic (put with its maxsize check, take with its
acknowledgements and reclaim of dead consumers' messages, lock acquisition
with its fencing counter, ...) is one function here, so one round trip.

Each object owns a few keys sharing the hash tag ``{name}`` (one cluster
slot): ``<prefix>:{<name>}:meta`` (a hash: kind, epoch, parameters,
counters) and the keys of its kind, listed in ``docs/design/redis.md``.

Every call carries the object's *epoch*, a random token written into
``meta`` when the object was created.  A missing or different epoch means
the server lost the object (restarted without persistence, flushed): the
call fails with ``INTERLOCK_LOST`` instead of acting on an empty state.

Errors raised here start with ``INTERLOCK_<WHAT>``; the client maps them to
Python exceptions (``_client.py``).
"""

LIBRARY_NAME = "interlock_1"

LIBRARY = r"""#!lua name=interlock_1

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- HMGET gives false for a missing field.
local function meta_get(meta, epoch, ...)
  local v = redis.call('HMGET', meta, 'epoch', ...)
  if v[1] ~= epoch then
    error('INTERLOCK_LOST the object is gone from the server '
          .. '(restarted without persistence, or flushed)')
  end
  return v
end

-- An "eventcount" for broadcast wake-ups: waiters XREAD BLOCK from the last
-- id they saw; a bump adds a newer one.  MAXLEN 1 keeps the key tiny.
local function last_event(ev)
  local r = redis.call('XREVRANGE', ev, '+', '-', 'COUNT', 1)
  if r[1] then return r[1][1] end
  return '0-0'
end

local function bump(ev)
  redis.call('XADD', ev, 'MAXLEN', '1', '*', 'e', '1')
end

------------------------------------------------------------------ objects

-- The type each key of an object of a kind must have, after meta (a hash).
local KEY_TYPES = {
  queue = {'stream', 'stream'},
  lock = {'string', 'list'}, rlock = {'string', 'list'},
  semaphore = {'zset', 'list'},
  event = {'string', 'stream'},
}

local function key_type(k)
  return redis.call('TYPE', k)['ok']
end

-- A key of this object that interlock did not make: refuse it by name,
-- never delete it nor use it.
local function foreign(k, what)
  error('INTERLOCK_FOREIGN ' .. k .. ' ' .. what)
end

-- KEYS: meta, then every other key of the object (KEY_TYPES order)
-- ARGV: kind, new epoch, mode ('any' | 'new' | 'existing'), p1, p2
-- -> {epoch, p1, p2}
local function open(keys, args)
  local kind, epoch, mode = args[1], args[2], args[3]
  local mt = key_type(keys[1])
  if mt ~= 'none' and mt ~= 'hash' then foreign(keys[1], mt) end
  local have = {false, false, false, false}
  if mt == 'hash' then
    have = redis.call('HMGET', keys[1], 'kind', 'epoch', 'p1', 'p2')
    if not have[1] or not have[2] then foreign(keys[1], 'hash') end
  end
  -- Our own epoch: a retry of the call that created it (its reply was
  -- lost), not another creator's object.
  if have[1] and mode == 'new' and have[2] ~= epoch then error('INTERLOCK_EXISTS') end
  if have[1] and have[1] ~= kind then error('INTERLOCK_KIND ' .. have[1]) end
  local want = KEY_TYPES[kind] or {}
  for i = 2, #keys do
    local t = key_type(keys[i])
    if t ~= 'none' then
      -- A new object's keys must all be absent; an existing one's, of its types.
      if not have[1] or t ~= want[i - 1] then foreign(keys[i], t) end
      if want[i - 1] == 'string' and kind ~= 'event' and redis.call('PTTL', keys[i]) < 0 then
        foreign(keys[i], 'string without a TTL')  -- a lock key always has its lease
      end
    end
  end
  if have[1] then return {have[2], have[3] or '', have[4] or ''} end
  if mode == 'existing' then error('INTERLOCK_MISSING') end
  redis.call('HSET', keys[1], 'kind', kind, 'epoch', epoch, 'p1', args[4], 'p2', args[5])
  if kind == 'queue' then
    redis.call('XGROUP', 'CREATE', keys[2], 'g', '$', 'MKSTREAM')
  end
  return {epoch, args[4], args[5]}
end

------------------------------------------------------------------ queue
-- KEYS: meta, stream, events, heartbeat key prefix
-- The stream holds every message not yet acknowledged: XLEN - pending is
-- the queue's depth (qsize), XLEN is its unfinished count (join).  After
-- close() it also holds exactly one close marker (field 'c'), always its
-- last entry, handed from consumer to consumer (see take / recirculate).

local function pending_count(s)
  return redis.call('XPENDING', s, 'g')[1]
end

local function marker_waiting(s, meta)
  local mid = redis.call('HGET', meta, 'marker')
  if not mid then return 0 end
  local p = redis.call('XPENDING', s, 'g', mid, mid, 1)
  if p[1] then return 0 end
  return 1
end

-- Acknowledge ids.  The last one done wakes join()ers, if any may be
-- waiting: `jw` (meta) is the server time until which one may be (set by
-- q_state for a join that is about to wait); without one, no event is
-- added (it would cost every get that empties the queue an XADD).
local function ack(s, ev, closed, jw, ids)
  if #ids == 0 then return end
  redis.call('XACK', s, 'g', unpack(ids))
  redis.call('XDEL', s, unpack(ids))
  if not jw or tonumber(jw) < now_ms() then return end
  local left = redis.call('XLEN', s)
  if closed then left = left - 1 end
  if left <= 0 then bump(ev) end
end

-- Replace a delivered close marker with a fresh one, so that every consumer
-- in turn (and every later get) sees the close.
local function recirculate(s, meta, id)
  redis.call('XACK', s, 'g', id)
  redis.call('XDEL', s, id)
  local nid = redis.call('XADD', s, '*', 'c', '1')
  redis.call('HSET', meta, 'marker', nid)
end

-- At most this many entries are reclaimed by one call (bounds its run time).
local RECLAIM_MAX = 10000

-- Move to `me` everything dead consumers (no heartbeat key) hold, in one
-- pass, and then every entry idle for longer than the lease (its holder is
-- alive but lost track of it: a reply lost on the way, or a consumer that
-- stopped renewing its messages), up to RECLAIM_MAX in all.
local function reclaim(s, hbp, me, lease, out)
  local cs = redis.call('XINFO', 'CONSUMERS', s, 'g')
  for _, c in ipairs(cs) do
    local name, pending = nil, 0
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end
    end
    if name and name ~= me and redis.call('EXISTS', hbp .. name) == 0 then
      while pending > 0 and #out < RECLAIM_MAX do
        local p = redis.call('XPENDING', s, 'g', '-', '+', math.min(pending, 1000), name)
        local ids = {}
        for _, e in ipairs(p) do ids[#ids + 1] = e[1] end
        if #ids == 0 then pending = 0 break end
        local got = redis.call('XCLAIM', s, 'g', me, 0, unpack(ids))
        for _, e in ipairs(got) do out[#out + 1] = e end
        pending = pending - #ids
      end
      if pending <= 0 then redis.call('XGROUP', 'DELCONSUMER', s, 'g', name) end
    end
  end
  local cursor = '0-0'
  repeat
    if #out >= RECLAIM_MAX then break end
    local r = redis.call('XAUTOCLAIM', s, 'g', me, lease, cursor,
                         'COUNT', math.min(1000, RECLAIM_MAX - #out))
    cursor = r[1]
    for _, e in ipairs(r[2]) do out[#out + 1] = e end
  until cursor == '0-0'
end

-- Discard (acknowledge and delete) what nobody will take after an immediate
-- shutdown: every entry never delivered (after the group's last delivered
-- id) but the close marker, and every entry held by a dead consumer (no
-- heartbeat key: it would otherwise be reclaimed and delivered).  What a
-- live consumer holds stays: it was taken before the shutdown, and a
-- JoinableQueue's join() waits for its task_done.  Then XLEN counts only
-- those (and the marker), so qsize() is 0 and join() can return.
local function discard(s, meta, hbp)
  local mid = redis.call('HGET', meta, 'marker')
  local last = '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    for i = 1, #g, 2 do
      if g[i] == 'name' and g[i + 1] == 'g' then
        for j = 1, #g, 2 do
          if g[j] == 'last-delivered-id' then last = g[j + 1] end
        end
      end
    end
  end
  repeat
    local r = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1000)
    local ids = {}
    for _, e in ipairs(r) do
      if e[1] ~= mid then ids[#ids + 1] = e[1] end
      last = e[1]
    end
    if #ids > 0 then redis.call('XDEL', s, unpack(ids)) end
  until #r < 1000
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', s, 'g')) do
    local name = nil
    for i = 1, #c, 2 do if c[i] == 'name' then name = c[i + 1] end end
    if name and redis.call('EXISTS', hbp .. name) == 0 then
      repeat
        local p = redis.call('XPENDING', s, 'g', '-', '+', 1000, name)
        local ids = {}
        for _, e in ipairs(p) do
          if e[1] ~= mid then ids[#ids + 1] = e[1] end
        end
        if #ids > 0 then
          redis.call('XACK', s, 'g', unpack(ids))
          redis.call('XDEL', s, unpack(ids))
        end
      until #ids == 0
      redis.call('XGROUP', 'DELCONSUMER', s, 'g', name)
    end
  end
end

-- ARGV: epoch, consumer, count, lease_ms, resync ('1': first re-read my own
-- pending list), nack, ack ids...
-- -> {seq, entries, ms until the next reclaim pass is due}: entries (own
-- pending first if resync, then reclaimed, then new), each
-- {id, {field, value, ...}}.  Safe to repeat after a lost
-- reply: acks are idempotent, and what the lost reply carried stays in the
-- consumer's pending list, for its resync (or, once idle past the lease,
-- for anyone's reclaim).
local function q_take(keys, args)
  local meta, s, ev, hbp = keys[1], keys[2], keys[3], keys[4]
  local m = meta_get(meta, args[1], 'p1', 'closed', 'reclaim_at', 'jw', 'immediate')
  local me, want, lease = args[2], tonumber(args[3]), tonumber(args[4])
  local nack = tonumber(args[6])
  local ids = {}
  for i = 1, nack do ids[i] = args[6 + i] end
  ack(s, ev, m[3], m[5], ids)
  redis.call('SET', hbp .. me, '1', 'PX', lease)
  local out = {}
  if args[5] == '1' then
    local r = redis.call('XREADGROUP', 'GROUP', 'g', me, 'STREAMS', s, '0')
    if r then
      for _, e in ipairs(r[1][2]) do
        if e[2] then out[#out + 1] = e end  -- (nil fields: deleted meanwhile)
      end
    end
  end
  local now = now_ms()
  local due = tonumber(m[4] or 0)
  if now >= due then
    due = now + math.floor(lease / 2)
    redis.call('HSET', meta, 'reclaim_at', due)
    -- After an immediate shutdown, what dead consumers held is discarded,
    -- not delivered again.
    if m[6] then discard(s, meta, hbp) else reclaim(s, hbp, me, lease, out) end
  end
  if #out < want then
    local r = redis.call('XREADGROUP', 'GROUP', 'g', me, 'COUNT', want - #out, 'STREAMS', s, '>')
    if r then
      for _, e in ipairs(r[1][2]) do out[#out + 1] = e end
    end
  end
  local freed = false
  for _, e in ipairs(out) do
    if e[2][1] == 'c' then recirculate(s, meta, e[1]) else freed = true end
  end
  if freed and tonumber(m[2]) > 0 then bump(ev) end
  return {redis.call('HINCRBY', meta, 'seq', 1), out, due - now}
end

-- The prelude of a direct read.  A consumer with nothing to re-read and no
-- reclaim pass due (it knows when from its last take) reads with
-- XREADGROUP (BLOCK) itself, pipelined right after this function in the
-- same round trip; this does what else a take does on that path: the
-- acknowledgements and the position counter.  (The heartbeat is the
-- keeper's, and every take's: one at least each half lease.)
-- KEYS: meta, stream, events
-- ARGV: epoch, ack ids...  -> seq
-- Safe to repeat (idempotent acks).  What the read after it took is the
-- consumer's own pending entries: a lost reply is handled as a take's.
local function q_pre(keys, args)
  local meta, s, ev = keys[1], keys[2], keys[3]
  local m = meta_get(meta, args[1], 'closed', 'jw')
  local ids = {}
  for i = 2, #args do ids[#ids + 1] = args[i] end
  ack(s, ev, m[2], m[3], ids)
  return redis.call('HINCRBY', meta, 'seq', 1)
end

-- The keeper's renewal of a consumer: its heartbeat, acknowledgements that
-- failed before (idempotent), and the idle time of the entries it holds
-- (so that idle reclaim never takes a message from a live holder that
-- still tracks it).  Only entries still in this consumer's own pending list
-- are touched.
-- KEYS: meta, stream, events, heartbeat key
-- ARGV: epoch, consumer, lease_ms, nack, ack ids..., held ids...
local function q_beat(keys, args)
  local meta, s, ev, hb = keys[1], keys[2], keys[3], keys[4]
  local m = meta_get(meta, args[1], 'closed', 'jw')
  local me = args[2]
  redis.call('SET', hb, '1', 'PX', tonumber(args[3]))
  local nack = tonumber(args[4])
  local ids = {}
  for i = 1, nack do ids[i] = args[4 + i] end
  ack(s, ev, m[2], m[3], ids)
  local nheld = #args - 4 - nack
  if nheld > 0 then
    local mine = {}
    local p = redis.call('XPENDING', s, 'g', '-', '+', nheld + 1000, me)
    for _, e in ipairs(p) do mine[e[1]] = true end
    local touch = {}
    for i = 5 + nack, #args do
      if mine[args[i]] then touch[#touch + 1] = args[i] end
    end
    if #touch > 0 then redis.call('XCLAIM', s, 'g', me, 0, unpack(touch), 'JUSTID') end
  end
  return 1
end

-- After a blocking XREADGROUP done by the client: the same bookkeeping.
-- ARGV: epoch, marker id or '', bounded ('1' | '0')
local function q_taken(keys, args)
  local meta, s, ev = keys[1], keys[2], keys[3]
  meta_get(meta, args[1])
  if args[2] ~= '' then recirculate(s, meta, args[2]) end
  if args[3] == '1' then bump(ev) end
  return 1
end

-- ARGV: epoch, ids...
local function q_ack(keys, args)
  local m = meta_get(keys[1], args[1], 'closed', 'jw')
  local ids = {}
  for i = 2, #args do ids[#ids + 1] = args[i] end
  ack(keys[2], keys[3], m[2], m[3], ids)
  return 1
end

-- The count a put call with number `reqno` is answered with when `last`
-- (its producer's record: "<number>:<count>:<ms>") says it already ran: the
-- count recorded (equal), 0 for an older call its producer has given up on
-- (lower: it is not waiting for this reply; applying it now would reorder
-- its puts), nil when it did not.  (Top level, as q_put's other helper: a
-- closure made per call costs every put.)
local function put_applied(last, reqno)
  if not last then return nil end
  local ln, lc = string.match(last, '^(%d+):(%d+)')
  if not ln or tonumber(ln) < reqno then return nil end
  if tonumber(ln) == reqno then return tonumber(lc) end
  return 0
end

-- Forget the request records of producers idle more than `ttl` ms (their
-- last put's server time is the record's third part).
local function prune_requests(meta, now, ttl)
  local all = redis.call('HGETALL', meta)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 3) == 'rq:' then
      local t = tonumber(string.match(all[i + 1], ':(%d+)$'))
      if not t or t + ttl < now then redis.call('HDEL', meta, all[i]) end
    end
  end
end

-- KEYS: meta, stream, events
-- ARGV: epoch, partial ('1': put what fits), n, request number, request
-- record TTL (ms), producer, then per item:
--   kind, m, value1 .. valuem   (kind: 'r' bytes, 'a' bytearray, 'p' pickle
--   whose out-of-band buffers are value2 .. valuem)
-- -> {put count (-1: closed), last event id ('' when all went in), seq}
--
-- Exactly once under retries: a producer (one thread of one process)
-- numbers its calls 1, 2, 3, ...; its request record, field
-- `rq:<producer>` of meta, holds "number:put count:server ms" of the last
-- one applied.  A call whose number is already there is a retry (or a
-- late copy) of one that ran: it returns the count recorded, and puts
-- nothing.  One field per producer and queue (not per call), overwritten
-- by each put; every 256th put forgets those idle past the TTL.
--
-- Three commands in the common case: the HMGET that reads the epoch, the
-- bound, the close flag, the position counter and the producer's record;
-- one XADD per item; one HSET that writes the counter and the record
-- (the XADD's id gives the server time).
local function q_put(keys, args)
  if #keys ~= 3 then  -- 0.1's layout (a fourth key, the request key)
    error('INTERLOCK_VERSION il_q_put called by a client of an older interlock: every '
          .. 'client of one server must run the same version')
  end
  local meta, s, ev = keys[1], keys[2], keys[3]
  local field = 'rq:' .. args[6]
  local m = meta_get(meta, args[1], 'p1', 'closed', 'seq', field)
  local reqno = tonumber(args[4])
  local seq = tonumber(m[4] or 0)
  local got = put_applied(m[5], reqno)
  if got then return {got, last_event(ev), seq} end
  if m[3] then return {-1, last_event(ev), seq} end
  local n, maxsize = tonumber(args[3]), tonumber(m[2])
  local room = n
  if maxsize > 0 then
    room = maxsize - (redis.call('XLEN', s) - pending_count(s))
    if room < n and args[2] ~= '1' then room = 0 end
    if room > n then room = n end
    if room < 0 then room = 0 end
  end
  local i, id = 7, nil
  for _ = 1, room do
    local cnt = tonumber(args[i + 1])
    if cnt == 1 then  -- (bytes, or a pickle without out-of-band buffers)
      id = redis.call('XADD', s, '*', args[i], args[i + 2])
    else
      local xa = {'XADD', s, '*', args[i], args[i + 2]}
      for j = 2, cnt do
        xa[#xa + 1] = tostring(j - 1)
        xa[#xa + 1] = args[i + 1 + j]
      end
      id = redis.call(unpack(xa))
    end
    i = i + 2 + cnt
  end
  local now
  if id then now = tonumber(string.match(id, '^(%d+)')) else now = now_ms() end
  seq = seq + 1
  redis.call('HSET', meta, 'seq', seq, field, args[4] .. ':' .. room .. ':' .. now)
  if seq % 256 == 0 then prune_requests(meta, now, tonumber(args[5])) end
  -- The event id is what a producer that must wait for room waits from; one
  -- whose items all went in has no use for it.
  local event = ''
  if room < n then event = last_event(ev) end
  return {room, event, seq}
end

-- ARGV: epoch[, join wait ms] -> {qsize, unfinished, closed, maxsize, pending,
-- consumers, last event id, seq}
-- With a join wait: a join() may wait that long from now for the last
-- acknowledgement (see ack), and is told of it by an event.  Registered in
-- the same step as the event id is read, so that acknowledgement is never
-- missed; idempotent (the later end is kept).
local function q_state(keys, args)
  local meta, s, ev = keys[1], keys[2], keys[3]
  local m = meta_get(meta, args[1], 'p1', 'closed', 'jw')
  if args[2] then
    local until_ms = now_ms() + tonumber(args[2])
    if not m[4] or tonumber(m[4]) < until_ms then redis.call('HSET', meta, 'jw', until_ms) end
  end
  local len, pend = redis.call('XLEN', s), pending_count(s)
  local closed, depth, unfinished = 0, len - pend, len
  if m[3] then
    closed = 1
    depth = depth - marker_waiting(s, meta)
    unfinished = len - 1
  end
  local consumers = #redis.call('XINFO', 'CONSUMERS', s, 'g')
  return {depth, unfinished, closed, tonumber(m[2]), pend, consumers, last_event(ev),
          tonumber(redis.call('HGET', meta, 'seq') or 0)}
end

-- shutdown(immediate): puts are refused from now on; consumers drain what
-- is left, then meet the close marker (immediate: nothing is left).
-- KEYS: meta, stream, events[, heartbeat key prefix (immediate)]
-- ARGV: epoch, immediate ('1' | '0').  Idempotent; a later immediate still
-- discards.  One function: all or nothing, whoever dies when.
local function q_shutdown(keys, args)
  local meta, s, ev = keys[1], keys[2], keys[3]
  local m = meta_get(meta, args[1], 'closed')
  if not m[2] then
    redis.call('HSET', meta, 'closed', '1')
    local id = redis.call('XADD', s, '*', 'c', '1')
    redis.call('HSET', meta, 'marker', id)
  end
  if args[2] == '1' then
    redis.call('HSET', meta, 'immediate', '1')
    discard(s, meta, keys[4])
  end
  bump(ev)
  return 1
end

-- The name of 0.1 (close() was the queue-wide end): a client of that
-- version calls it.
local function q_close(keys, args)
  return q_shutdown(keys, {args[1], '0'})
end

------------------------------------------------------------------ lock
-- KEYS: meta, lock (owner token, with the lease as its TTL), wake list
-- meta: fence (counter), holder (token of the current acquisition; left
-- behind when a lease runs out instead of being released), contentions,
-- expiries.

-- ARGV: epoch, token, lease_ms -> {1, fence, previous holder or ''} | {0, pttl}
-- A token is fresh for each acquire() call, so a call that finds the lock
-- held by its own token is a retry of one whose reply was lost: it gets
-- that acquisition's answer again (the fence counter has not moved: no one
-- else acquired since), and nothing changes.
local function lock_acquire(keys, args)
  local meta, lock = keys[1], keys[2]
  meta_get(meta, args[1])
  local pttl = redis.call('PTTL', lock)
  if pttl == -1 then foreign(lock, 'key without a TTL') end  -- would be waited on forever
  if pttl >= 0 then
    if redis.call('GET', lock) == args[2] then
      local m = redis.call('HMGET', meta, 'fence', 'prev')
      return {1, tonumber(m[1]), m[2] or ''}
    end
    redis.call('HINCRBY', meta, 'contentions', 1)
    return {0, pttl}
  end
  local prev = redis.call('HGET', meta, 'holder')
  if prev then redis.call('HINCRBY', meta, 'expiries', 1) else prev = '' end
  redis.call('SET', lock, args[2], 'PX', args[3])
  redis.call('HSET', meta, 'holder', args[2], 'prev', prev)
  return {1, redis.call('HINCRBY', meta, 'fence', 1), prev}
end

-- ARGV: epoch, token -> 1 released | 0 not the holder (lease ran out)
local function lock_release(keys, args)
  local meta, lock, wake = keys[1], keys[2], keys[3]
  meta_get(meta, args[1])
  if redis.call('GET', lock) ~= args[2] then return 0 end
  redis.call('DEL', lock)
  redis.call('HDEL', meta, 'holder')
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 0)
  return 1
end

-- ARGV: epoch -> {holder token or '', pttl, fence, contentions, expiries}
local function lock_state(keys, args)
  local meta, lock = keys[1], keys[2]
  local m = meta_get(meta, args[1], 'fence', 'contentions', 'expiries')
  return {redis.call('GET', lock) or '', redis.call('PTTL', lock),
          tonumber(m[2] or 0), tonumber(m[3] or 0), tonumber(m[4] or 0)}
end

------------------------------------------------------------------ semaphore
-- KEYS: meta (p1 = value), holders (zset: token -> lease end, ms), wake list

-- meta also holds 'pf:<token>': the fencing token of each live permit (for
-- a retried acquire); deleted with the permit (release or sweep).
local function sem_sweep(meta, holders, now)
  local gone = redis.call('ZRANGEBYSCORE', holders, '-inf', now)
  for _, tok in ipairs(gone) do
    redis.call('ZREM', holders, tok)
    redis.call('HDEL', meta, 'pf:' .. tok)
  end
  if #gone > 0 then redis.call('HINCRBY', meta, 'expiries', #gone) end
  return #gone
end

-- ARGV: epoch, token, lease_ms -> {1, fence, expired swept} | {0, ms until the first lease ends}
-- As for the lock, a token already among the holders is a retry of a call
-- whose reply was lost: the same permit and fence again, nothing changes.
local function sem_acquire(keys, args)
  local meta, holders = keys[1], keys[2]
  local m = meta_get(meta, args[1], 'p1')
  local now = now_ms()
  local gone = sem_sweep(meta, holders, now)
  if redis.call('ZSCORE', holders, args[2]) then
    return {1, tonumber(redis.call('HGET', meta, 'pf:' .. args[2]) or 0), gone}
  end
  if redis.call('ZCARD', holders) < tonumber(m[2]) then
    redis.call('ZADD', holders, now + tonumber(args[3]), args[2])
    local fence = redis.call('HINCRBY', meta, 'fence', 1)
    redis.call('HSET', meta, 'pf:' .. args[2], fence)
    return {1, fence, gone}
  end
  redis.call('HINCRBY', meta, 'contentions', 1)
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end

-- ARGV: epoch, token -> 1 | 0
local function sem_release(keys, args)
  local meta, holders, wake = keys[1], keys[2], keys[3]
  local m = meta_get(meta, args[1], 'p1')
  if redis.call('ZREM', holders, args[2]) == 0 then return 0 end
  redis.call('HDEL', meta, 'pf:' .. args[2])
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, tonumber(m[2]) - 1)
  return 1
end

-- ARGV: epoch -> {available, value, fence, contentions, expiries}
local function sem_state(keys, args)
  local meta, holders = keys[1], keys[2]
  local m = meta_get(meta, args[1], 'p1', 'fence', 'contentions', 'expiries')
  local live = redis.call('ZCOUNT', holders, '(' .. now_ms(), '+inf')
  return {tonumber(m[2]) - live, tonumber(m[2]), tonumber(m[3] or 0),
          tonumber(m[4] or 0), tonumber(m[5] or 0)}
end

------------------------------------------------------------------ leases

-- KEYS: key; ARGV: what ('lock' | 'sem' | 'beat'), token, lease_ms -> 1 | 0 (lost)
local function renew(keys, args)
  local k, what, token, lease = keys[1], args[1], args[2], tonumber(args[3])
  if what == 'lock' then
    if redis.call('GET', k) ~= token then return 0 end
    redis.call('PEXPIRE', k, lease)
  elseif what == 'sem' then
    if not redis.call('ZSCORE', k, token) then return 0 end
    redis.call('ZADD', k, 'XX', now_ms() + lease, token)
  else
    redis.call('SET', k, '1', 'PX', lease)
  end
  return 1
end

------------------------------------------------------------------ event
-- KEYS: meta, flag, events

local function ev_set(keys, args)
  meta_get(keys[1], args[1])
  redis.call('SET', keys[2], '1')
  bump(keys[3])
  return 1
end

local function ev_clear(keys, args)
  meta_get(keys[1], args[1])
  redis.call('DEL', keys[2])
  return 1
end

-- -> {is set, last event id}
local function ev_state(keys, args)
  meta_get(keys[1], args[1])
  return {redis.call('EXISTS', keys[2]), last_event(keys[3])}
end

redis.register_function('il_open', open)
redis.register_function('il_q_take', q_take)
redis.register_function('il_q_taken', q_taken)
redis.register_function('il_q_pre', q_pre)
redis.register_function('il_q_ack', q_ack)
redis.register_function('il_q_beat', q_beat)
redis.register_function('il_q_put', q_put)
redis.register_function('il_q_state', q_state)
redis.register_function('il_q_close', q_close)
redis.register_function('il_q_shutdown', q_shutdown)
redis.register_function('il_lock_acquire', lock_acquire)
redis.register_function('il_lock_release', lock_release)
redis.register_function('il_lock_state', lock_state)
redis.register_function('il_sem_acquire', sem_acquire)
redis.register_function('il_sem_release', sem_release)
redis.register_function('il_sem_state', sem_state)
redis.register_function('il_renew', renew)
redis.register_function('il_ev_set', ev_set)
redis.register_function('il_ev_clear', ev_clear)
redis.register_function('il_ev_state', ev_state)
"""
