-- Reserve the next free slot of the shared Stripe pace (tasks/ratelimit.py); GCRA, no burst.
-- Redis's clock, not the workers': one timeline for every caller.
-- KEYS: the pace's key   ARGV: interval (s), max wait (s)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[2]) then return '-1' end
redis.call('SET', KEYS[1], tostring(tat + tonumber(ARGV[1])), 'PX',
           math.ceil(wait * 1000) + 60000)
return tostring(wait)
