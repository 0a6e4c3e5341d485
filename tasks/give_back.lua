-- Give back one message a live worker fetched but could not record as held (tasks/recovery.py):
-- out of its fetched list and into the given-back list (taken before the queue), only if it
-- is still there.
-- KEYS: the worker's fetched list, the given-back list   ARGV: the message
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
