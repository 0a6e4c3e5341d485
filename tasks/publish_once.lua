-- Publish a piece of work's entry once, and clear its delivery from the ledger (tasks/publish.py).
-- Redis 7 has no idempotent XADD, so the mark and the entry go in together.
-- KEYS: stream, publish-once mark, ledger (sorted set), ledger work (hash)
-- ARGV: maxlen, mark ttl, delivery id ('' for none), field, value, ...
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[3])
end
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
return {1, id}
