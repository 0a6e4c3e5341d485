-- Append one line to a piece of work's trail, index its search terms, count the step
-- (worker/trail.py). Run alone, or as a function inside worker/enqueue_with_trail.lua and
-- tasks/publish_with_trail.lua.
-- KEYS: the trail, this minute's throughput hash, the ledger's work hash, then one key
--       per search term
-- ARGV: line (JSON), ttl (s), lines kept, work id, now (s), work ids kept per term,
--       counter field ('' = not counted), throughput ttl (s), and, after a queueing:
--       delivery id, message id, line if that message was not the one queued (a duplicate)
local ttl = tonumber(ARGV[2])
local line = ARGV[1]
local new = true
if ARGV[9] and ARGV[9] ~= '' then
  local record = redis.call('HGET', KEYS[3], ARGV[9])
  new = record and string.find(record, ARGV[10], 1, true) ~= nil
  if not new then line = ARGV[11] end
end
redis.call('RPUSH', KEYS[1], line)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[1], ttl)
if not new then return 0 end
for i = 4, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[5], ARGV[4])
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -tonumber(ARGV[6]) - 1)
  redis.call('EXPIRE', KEYS[i], ttl)
end
if ARGV[7] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[7], 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[8]))
end
return 1
