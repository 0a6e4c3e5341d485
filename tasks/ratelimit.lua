-- The shared, adaptive paces of one Stripe key (tasks/ratelimit.py): its global pace and
-- the pace of one endpoint, taken together. Redis's clock, not the workers': one timeline
-- for every caller.
-- KEYS: per pace, its hash (tat = no slot before it, after a cut; rate; at = when rate was
--       set; epoch) and its slots (a sorted set of the times reserved, 1/rate apart)
-- acquire: ARGV 'acquire', max wait (s), the slot the caller holds ('': none), then per
--          pace: ceiling (calls/s), the epoch the caller holds (-1: none), increase
--          (calls/s gained per second)
--          -> {wait, the slot reserved, epoch of each pace}; wait -1: no slot in max wait
--          in every pace
-- slow (one pace): ARGV 'slow', ceiling, held epoch, increase, decrease factor, floor,
--          pause (s) -> {rate, epoch}
-- peek (one pace): ARGV 'peek', ceiling, -1, increase -> {rate, epoch}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

-- One pace as it stands now: additive increase, continuous in time, never above the ceiling.
local function load(key, ceiling, increase)
  local h = redis.call('HMGET', key, 'tat', 'rate', 'at', 'epoch')
  local at = tonumber(h[3]) or now
  local rate = tonumber(h[2]) or ceiling
  rate = math.min(ceiling, rate + increase * math.max(0, now - at))
  return tonumber(h[1]) or 0, rate, tonumber(h[4]) or 0
end

-- The earliest time from `at` on that is `gap` or more from every slot reserved in `slots`.
-- A call waiting for one pace leaves the other paces' earlier slots to other calls: one
-- endpoint's backlog never pushes the global pace (and so the other endpoints) ahead.
local function free_from(slots, at, gap)
  local taken = redis.call('ZRANGEBYSCORE', slots, '(' .. (at - gap), '+inf', 'WITHSCORES')
  for i = 2, #taken, 2 do
    local s = tonumber(taken[i])
    if s - at >= gap then return at end
    at = math.max(at, s + gap)
  end
  return at
end

if ARGV[1] == 'acquire' then
  local n = #KEYS / 2
  local rates, epochs, fresh = {}, {}, true
  local slot = now
  for i = 1, n do
    local base = 3 + (i - 1) * 3
    local from, rate, epoch = load(KEYS[2 * i - 1], tonumber(ARGV[base + 1]),
                                   tonumber(ARGV[base + 3]))
    rates[i], epochs[i] = rate, epoch
    if tonumber(ARGV[base + 2]) ~= epoch then fresh = false end
    if from > slot then slot = from end
  end
  local out = {'0', ARGV[3]}
  for i = 1, n do out[i + 2] = tostring(epochs[i]) end
  -- The caller slept until the slot it holds: still good unless some pace slowed since.
  if fresh then return out end
  -- Else that slot is void: given back in every pace (the one that slowed has forgotten
  -- it already), or the other paces would keep it from the callers queueing anew.
  if ARGV[3] ~= '' then
    for i = 1, n do redis.call('ZREM', KEYS[2 * i], ARGV[3]) end
  end
  -- The first time free in every pace: each pace may push it on, so again until none does.
  local max_wait = tonumber(ARGV[2])
  local moved = true
  while moved and slot - now <= max_wait do
    moved = false
    for i = 1, n do
      local later = free_from(KEYS[2 * i], slot, 1 / rates[i])
      if later > slot then slot, moved = later, true end
    end
  end
  local wait = slot - now
  if wait > max_wait then out[1] = '-1'; return out end
  local member = string.format('%.6f', slot)
  for i = 1, n do
    local hash, slots = KEYS[2 * i - 1], KEYS[2 * i]
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now - 1 / rates[i])
    redis.call('ZADD', slots, slot, member)
    redis.call('HSET', hash, 'rate', tostring(rates[i]), 'at', tostring(now),
               'epoch', tostring(epochs[i]))
    redis.call('PEXPIRE', hash, math.ceil(wait * 1000) + 600000)
    redis.call('PEXPIRE', slots, math.ceil(wait * 1000) + 600000)
  end
  out[1], out[2] = tostring(wait), member
  return out
end

local ceiling, held = tonumber(ARGV[2]), tonumber(ARGV[3])
local tat, rate, epoch = load(KEYS[1], ceiling, tonumber(ARGV[4]))
if ARGV[1] == 'peek' then return {tostring(rate), tostring(epoch)} end

-- slow: Stripe answered 429 to a call paced in this epoch. Multiplicative decrease, once per
-- epoch: the 429s of calls paced before it say nothing about the new pace. A new epoch
-- voids every slot held, so waiting callers queue again at the new pace.
if held ~= epoch then return {tostring(rate), tostring(epoch)} end
rate = math.max(tonumber(ARGV[6]), rate * tonumber(ARGV[5]))
epoch = epoch + 1
-- No slot before one interval on (after any Retry-After), so Stripe's bucket has a call back.
local pause = tonumber(ARGV[7])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'tat', tostring(now + pause + 1 / rate), 'rate', tostring(rate),
           'at', tostring(now + pause), 'epoch', tostring(epoch))
redis.call('PEXPIRE', KEYS[1], 600000 + math.ceil(pause * 1000))
return {tostring(rate), tostring(epoch)}
