-- A delivery queued once and its trail's line, in one step (worker/queue.py): the
-- receiver's one call per delivery. Enqueuer prepends enqueue_once.lua and trail.lua, each
-- as a function of its own KEYS and ARGV.
-- KEYS: enqueue_once.lua's 4, then trail.lua's
-- ARGV: enqueue_once.lua's 6, then trail.lua's 8 and the line written instead when the
--       delivery was queued before (none of them: no trail kept)
-- Returns enqueue_once.lua's answer (1 queued, 0 a duplicate) and, when the trail's line
-- could not be written, why: the trail never costs the work, which is already queued.
local function slice(t, from, to)
  local out = {}
  for i = from, to do out[#out + 1] = t[i] end
  return out
end
local queued = enqueue_once(slice(KEYS, 1, 4), slice(ARGV, 1, 6))
if #ARGV > 6 then
  local trail_argv = slice(ARGV, 7, 14)
  if queued == 0 then  -- a duplicate: its own line, no index, not counted
    trail_argv[1], trail_argv[9] = ARGV[15], '1'
  end
  local ok, err = pcall(trail, slice(KEYS, 5, #KEYS), trail_argv)
  -- A failed redis.call raises a table with the error's text in `err`.
  if not ok then return {queued, type(err) == 'table' and err.err or tostring(err)} end
end
return {queued, false}
