-- The end of a piece of work in one step (tasks/publish.py): what the work is done with
-- (its kombu delivery: the ack; its place among the Stripe calls in flight), the user ->
-- customer memory of a create, the entry published once (publish_once.lua), the trail's
-- line (worker/trail.lua) naming the entry. Publisher prepends both scripts, each as a
-- function of its own KEYS and ARGV, so each file stays the one place its logic lives.
-- KEYS: publish_once.lua's 6, the memory key, the `z` sorted sets then the `h` hashes to
--       remove one member of each from, then trail.lua's
-- ARGV: how many of publish_once.lua's ARGV follow the header, the memory's value
--       ('' = none) and ttl, the placeholder the trail line holds for the entry id, z, h;
--       the z members then the h fields; publish_once.lua's ARGV; trail.lua's ARGV (none:
--       no trail kept)
local function slice(t, from, to)
  local out = {}
  for i = from, to do out[#out + 1] = t[i] end
  return out
end
local n, z, h = tonumber(ARGV[1]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- Done with on every path, a work published before among them: removing twice is nothing.
for i = 1, z do redis.call('ZREM', KEYS[7 + i], ARGV[6 + i]) end
for i = z + 1, z + h do redis.call('HDEL', KEYS[7 + i], ARGV[6 + i]) end
if ARGV[2] ~= '' then redis.call('SET', KEYS[7], ARGV[2], 'EX', ARGV[3]) end
local first = 7 + z + h
local published = publish_once(slice(KEYS, 1, 6), slice(ARGV, first, first - 1 + n))
local trail_argv = slice(ARGV, first + n, #ARGV)
if #trail_argv > 0 then
  local line, placeholder = trail_argv[1], ARGV[4]
  local at = string.find(line, placeholder, 1, true)
  if at then
    -- The entry's id; `again` when an earlier run had published it.
    local id = '"' .. published[2] .. '"' .. (published[1] == 0 and ',"again":true' or '')
    trail_argv[1] = string.sub(line, 1, at - 1) .. id .. string.sub(line, at + #placeholder)
  end
  trail(slice(KEYS, 8 + z + h, #KEYS), trail_argv)
end
return published
