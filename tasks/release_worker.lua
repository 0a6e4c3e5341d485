-- Give back what a worker had fetched but not yet recorded (tasks/recovery.py): into the
-- given-back list, which workers take from before the queue, oldest first (the fetched
-- list has its newest at the left); then forget the worker.
-- KEYS: the worker's fetched list, the given-back list, the live workers, the worker's key
-- ARGV: worker id
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do moved = moved + 1 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return moved
