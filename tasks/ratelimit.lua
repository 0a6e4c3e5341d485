-- The shared, adaptive paces of one Stripe key (tasks/ratelimit.py): its global pace and
-- the pace of one endpoint, taken together. Redis's clock, not the workers': one timeline
-- for every caller.
-- KEYS: the paces (each a hash: tat = next free slot, rate, at = when rate was set, epoch)
-- acquire: ARGV 'acquire', max wait (s), then per key: ceiling (calls/s), the epoch the
--          caller holds (-1: none), increase (calls/s gained per second)
--          -> {wait, epoch of each key}; wait -1: no slot in max wait in every pace
-- slow (KEYS[1] only): ARGV 'slow', ceiling, held epoch, increase, decrease factor, floor,
--          pause (s) -> {rate, epoch}
-- peek (KEYS[1] only): ARGV 'peek', ceiling, -1, increase -> {rate, epoch}
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

if ARGV[1] == 'acquire' then
  -- A call takes a slot in every pace at once, at the latest of their next free slots, so
  -- it never counts against one limiter while it waits for another.
  local n = #KEYS
  local tats, rates, epochs, fresh = {}, {}, {}, true
  local slot = now
  for i = 1, n do
    local base = 2 + (i - 1) * 3
    local tat, rate, epoch = load(KEYS[i], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 3]))
    tats[i], rates[i], epochs[i] = tat, rate, epoch
    if tonumber(ARGV[base + 2]) ~= epoch then fresh = false end
    if tat > slot then slot = tat end
  end
  local out = {}
  for i = 1, n do out[i + 1] = tostring(epochs[i]) end
  -- The caller slept until the slot it holds: still good unless some pace slowed since.
  if fresh then out[1] = '0'; return out end
  local wait = slot - now
  if wait > tonumber(ARGV[2]) then out[1] = '-1'; return out end
  for i = 1, n do
    redis.call('HSET', KEYS[i], 'tat', tostring(slot + 1 / rates[i]), 'rate',
               tostring(rates[i]), 'at', tostring(now), 'epoch', tostring(epochs[i]))
    redis.call('PEXPIRE', KEYS[i], math.ceil(wait * 1000) + 600000)
  end
  out[1] = tostring(wait)
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
-- The next slot one interval on (after any Retry-After), so Stripe's bucket has a call back.
local pause = tonumber(ARGV[7])
redis.call('HSET', KEYS[1], 'tat', tostring(now + pause + 1 / rate), 'rate', tostring(rate),
           'at', tostring(now + pause), 'epoch', tostring(epoch))
redis.call('PEXPIRE', KEYS[1], 600000 + math.ceil(pause * 1000))
return {tostring(rate), tostring(epoch)}
