-- A call's turn in one step (tasks/turn.py TurnTaker): a key read beside it (a
-- create's user -> customer memory), its slot in every pace (ratelimit.lua's acquire) and,
-- once the slots need no wait, its place among the calls in flight (concurrency.lua's
-- enter): a call waiting for its slot holds no place. TurnTaker prepends both scripts,
-- each as a function of its own KEYS and ARGV, so each file stays the one place its
-- logic lives.
-- KEYS: the key to read (when ARGV[1] is '1'), the cap's two keys (when ARGV[2] is '1'),
--       then ratelimit.lua's acquire KEYS (none: no pace)
-- ARGV: read ('1' or ''), cap ('1' or ''), the cap's ceiling, increase, call id, lease,
--       then ratelimit.lua's acquire ARGV (none: no pace)
-- -> {the value read ('' for none), 1 when in the cap (0: full, no cap, or the slots
--     wait), the cap's epoch, then ratelimit.lua's acquire answer (none: no pace)}
local function slice(t, from, to)
  local out = {}
  for i = from, to do out[#out + 1] = t[i] end
  return out
end
local at, read = 1, ''
if ARGV[1] == '1' then
  read = redis.call('GET', KEYS[1]) or ''
  at = 2
end
local cap_keys = nil
if ARGV[2] == '1' then
  cap_keys = {KEYS[at], KEYS[at + 1]}
  at = at + 2
end
local answer, wait = {}, 0
if at <= #KEYS then
  answer = pace(slice(KEYS, at, #KEYS), slice(ARGV, 7, #ARGV))
  wait = tonumber(answer[1])
end
local inside, epoch = 0, '0'
if cap_keys and wait == 0 then
  local entered = cap(cap_keys, {'enter', ARGV[3], '-1', ARGV[4], ARGV[5], ARGV[6]})
  inside, epoch = entered[1], entered[2]
end
local out = {read, inside, epoch}
for i = 1, #answer do out[#out + 1] = answer[i] end
return out
