-- Publish a piece of work's entry once, clear its delivery from the ledger, and trim the
-- stream without losing what a consumer group has not read (tasks/publish.py).
-- Redis 7 has no idempotent XADD, so the mark and the entry go in together.
-- KEYS: stream, publish-once mark, ledger (sorted set), ledger work (hash),
--       trim floor cache (string), dropped counter (hash)
-- ARGV: maxlen (0 = never trimmed), hard maxlen (0 = none), mark ttl, floor cache ms,
--       stream name, delivery id ('' for none), field, value, ...
-- Returns {new, entry id, stream length, unread entries dropped}.
if ARGV[6] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[6])
  redis.call('HDEL', KEYS[4], ARGV[6])
end
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen, 0, 0} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 7))
redis.call('SET', KEYS[2], id, 'EX', ARGV[3])

local maxlen = tonumber(ARGV[1])
local length = redis.call('XLEN', KEYS[1])
-- Trim in batches of about 1% (100 entries at least): each XTRIM costs a round of its own.
if maxlen == 0 or length <= maxlen + math.max(100, math.floor(maxlen / 100)) then
  return {1, id, length, 0}
end

local function older(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  return ams < bms or (ams == bms and tonumber(aseq) < tonumber(bseq))
end

-- The oldest entry any group still needs: its oldest delivered-but-unacked entry, or
-- the first it has not been delivered. 'none' when the stream has no group.
local function oldest_needed()
  local floor = 'none'
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    local needed = info['last-delivered-id']
    if tonumber(info['pending']) > 0 then
      needed = redis.call('XPENDING', KEYS[1], info['name'])[2]
    end
    if floor == 'none' or older(needed, floor) then floor = needed end
  end
  return floor
end

-- Groups only move forward, so a floor up to ARGV[4] ms old is still safe to trim below;
-- it spares the XINFO on every XADD. 'held' means a group holds everything above maxlen:
-- no XTRIM until the floor is looked up again.
local floor = redis.call('GET', KEYS[5])
if not floor then
  floor = oldest_needed()
  redis.call('SET', KEYS[5], floor, 'PX', ARGV[4])
end
if floor == 'none' then
  length = length - redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', maxlen)
elseif floor ~= 'held' then
  -- Whole nodes below the floor, and no more than brings the stream back to maxlen.
  local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', floor, 'LIMIT', length - maxlen)
  if trimmed == 0 then redis.call('SET', KEYS[5], 'held', 'KEEPTTL') end
  length = length - trimmed
end
local hard = tonumber(ARGV[2])
if hard == 0 or length <= hard then return {1, id, length, 0} end
local dropped = redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', hard)
if dropped > 0 then redis.call('HINCRBY', KEYS[6], ARGV[5], dropped) end
return {1, id, length - dropped, dropped}
