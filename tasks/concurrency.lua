-- The shared, adaptive cap on one Stripe key's calls in flight at once, across every worker:
-- Stripe's concurrency limiter (tasks/concurrency_cap.py). Redis's clock, one for every caller.
-- KEYS: the cap (hash: cap after the last cut, at = when, epoch), the calls in flight
--       (sorted set: call id -> when its lease ends)
-- ARGV: op, ceiling, held epoch (-1: none), increase (places regained per second), then
--   enter: call id, lease (s) -> {1: in, or 0: full; epoch}
--   leave: call id -> {1, epoch}
--   slow: decrease factor, floor -> {cap, epoch}
--   peek -> {cap, epoch}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ceiling, held, increase = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'cap', 'at', 'epoch')
local at = tonumber(h[2]) or now
local cap = math.min(ceiling, (tonumber(h[1]) or ceiling) + increase * math.max(0, now - at))
local epoch = tonumber(h[3]) or 0

if ARGV[1] == 'enter' then
  -- A worker that died mid-call gives its place back when its lease ends.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= math.floor(cap) then return {0, tostring(epoch)} end
  local lease = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease * 1000) + 60000)
  return {1, tostring(epoch)}
elseif ARGV[1] == 'leave' then
  redis.call('ZREM', KEYS[2], ARGV[5])
  return {1, tostring(epoch)}
elseif ARGV[1] == 'slow' and held == epoch then
  -- Stripe's concurrency limiter answered a call made in this epoch: fewer at once, once
  -- per epoch (the other calls in flight then say the same), climbing back as the paces do.
  cap = math.max(tonumber(ARGV[6]), cap * tonumber(ARGV[5]))
  epoch = epoch + 1
  redis.call('HSET', KEYS[1], 'cap', tostring(cap), 'at', tostring(now), 'epoch', tostring(epoch))
  redis.call('PEXPIRE', KEYS[1], 600000)
end
return {tostring(cap), tostring(epoch)}
