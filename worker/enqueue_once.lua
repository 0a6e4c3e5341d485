-- Dedupe, queue and record one delivery in one step (worker/queue.py).
-- KEYS: dedupe mark, Celery queue, ledger (sorted set), ledger work (hash)
-- ARGV: message, now, dedupe ttl, delivery id, ledger record
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
return 1
