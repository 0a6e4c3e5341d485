-- The shared, adaptive pace of one Stripe key (tasks/ratelimit.py). Redis's clock, not the
-- workers': one timeline for every caller.
-- KEYS[1]: the pace (hash: tat = next free slot, rate, at = when rate was set, epoch)
-- ARGV: op ('acquire' | 'slow' | 'peek'), ceiling (calls/s), the epoch the caller holds
--       (-1: none), increase (calls/s gained per second), then
--       acquire: max wait (s)                   -> {wait, epoch}; wait -1: none in max wait
--       slow: decrease factor, floor, pause (s) -> {rate, epoch}
--       peek: nothing                          -> {rate, epoch}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'at', 'epoch')
local ceiling = tonumber(ARGV[2])
local held = tonumber(ARGV[3])
local tat = tonumber(h[1]) or 0
local at = tonumber(h[3]) or now
local epoch = tonumber(h[4]) or 0
-- Additive increase, continuous in time, never above the caller's ceiling.
local rate = tonumber(h[2]) or ceiling
rate = math.min(ceiling, rate + tonumber(ARGV[4]) * math.max(0, now - at))

if ARGV[1] == 'peek' then return {tostring(rate), tostring(epoch)} end

if ARGV[1] == 'acquire' then
  -- The caller slept until the slot it holds: it is still good unless the pace slowed since.
  if held == epoch then return {'0', tostring(epoch)} end
  if tat < now then tat = now end
  local wait = tat - now
  if wait > tonumber(ARGV[5]) then return {'-1', tostring(epoch)} end
  redis.call('HSET', KEYS[1], 'tat', tostring(tat + 1 / rate), 'rate', tostring(rate),
             'at', tostring(now), 'epoch', tostring(epoch))
  redis.call('PEXPIRE', KEYS[1], math.ceil(wait * 1000) + 600000)
  return {tostring(wait), tostring(epoch)}
end

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
