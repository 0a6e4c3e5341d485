-- Give back what a worker had fetched but not yet recorded (worker/recovery.py): onto the
-- consuming end of the queue, so it runs next; then forget the worker.
-- KEYS: the worker's fetched list, the queue, the live workers, the worker's key
-- ARGV: worker id
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do moved = moved + 1 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return moved
