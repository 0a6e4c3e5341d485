-- Append one line to a piece of work's trail, index its search terms, count the step
-- (worker/trail.py). Run alone, or as a function inside worker/enqueue_with_trail.lua and
-- tasks/publish_with_trail.lua.
-- KEYS: the trail, this minute's throughput hash, then one key per search term
-- ARGV: line (JSON), ttl (s), lines kept, work id, now (s), work ids kept per term,
--       counter field ('' = not counted), throughput ttl (s), and '1' when the line is a
--       duplicate delivery's (its work was queued before: indexed and counted then)
local ttl = tonumber(ARGV[2])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[1], ttl)
if ARGV[9] == '1' then return 0 end
for i = 3, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[5], ARGV[4])
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -tonumber(ARGV[6]) - 1)
  redis.call('EXPIRE', KEYS[i], ttl)
end
if ARGV[7] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[7], 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[8]))
end
return 1
