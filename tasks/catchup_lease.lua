-- The catch-up lease (tasks/catchup.py): one worker at a time lists Stripe's events.
-- KEYS: the lease. ARGV: holder (worker id), "hold" or "release", lease in ms.
-- hold: take the lease when free, or renew it when this holder has it; 1 when held.
-- release: give it up when this holder has it (a graceful stop: the next worker need not
-- wait for it to lapse).
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
