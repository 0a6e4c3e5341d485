-- The end of a piece of work in one step (tasks/publish.py): the user -> customer memory of
-- a create, the entry published once (publish_once.lua), the trail's line (worker/trail.lua)
-- naming the entry. Publisher prepends both scripts, each as a function of its own KEYS and
-- ARGV, so each file stays the one place its logic lives.
-- KEYS: publish_once.lua's 6, the memory key, then trail.lua's
-- ARGV: how many of publish_once.lua's ARGV follow the first four, the memory's value
--       ('' = none) and ttl, the placeholder the trail line holds for the entry id;
--       publish_once.lua's ARGV; trail.lua's ARGV (none: no trail kept)
local function slice(t, from, to)
  local out = {}
  for i = from, to do out[#out + 1] = t[i] end
  return out
end
local n = tonumber(ARGV[1])
if ARGV[2] ~= '' then redis.call('SET', KEYS[7], ARGV[2], 'EX', ARGV[3]) end
local published = publish_once(slice(KEYS, 1, 6), slice(ARGV, 5, 4 + n))
local trail_argv = slice(ARGV, 5 + n, #ARGV)
if #trail_argv > 0 then
  local line, placeholder = trail_argv[1], ARGV[4]
  local at = string.find(line, placeholder, 1, true)
  if at then
    -- The entry's id; `again` when an earlier run had published it.
    local id = '"' .. published[2] .. '"' .. (published[1] == 0 and ',"again":true' or '')
    trail_argv[1] = string.sub(line, 1, at - 1) .. id .. string.sub(line, at + #placeholder)
  end
  trail(slice(KEYS, 8, #KEYS), trail_argv)
end
return published
