-- Move an entry a consumer group gave up on to the group's dead-letter stream, once
-- (stripe_worker_agent/consumer.py): only the consumer whose ack lands writes the dead letter.
-- KEYS: stream, dead-letter stream
-- ARGV: group, entry id, field, value, ...
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
