-- A worker's heartbeat (tasks/recovery.py), on Redis's clock.
-- KEYS: the worker's key, the live workers (sorted set)
-- ARGV: worker id, its facts (JSON), lapse in ms
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return tostring(now)
