-- Dedupe, queue and record one delivery in one step (worker/queue.py).
-- KEYS: dedupe mark, Celery queue, ledger (sorted set), ledger work (hash)
-- ARGV: message, now, dedupe ttl, delivery id, ledger record, 'next' or 'last'
-- Workers take from the list's right end: 'next' (RPUSH) is taken before everything queued,
-- 'last' (LPUSH, kombu's own end) after it.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[6] == 'next' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
else
  redis.call('LPUSH', KEYS[2], ARGV[1])
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
return 1
