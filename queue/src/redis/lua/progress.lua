-- progress.lua: forward a stage-progress notice, fenced by the lease.
--
-- KEYS[1] job hash              P:job:{id}
-- ARGV[1] job id
-- ARGV[2] worker id
-- ARGV[3] attempt
-- ARGV[4] stage (wire spelling), ARGV[5] step, ARGV[6] total
-- Returns 'ok', 'cancelled' (released or cancelled) or 'lost' (taken back).

local st = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempt', 'channel')
if not st[1] or st[1] == 'cancelled' then
  return 'cancelled'
end
if st[1] ~= 'running' or st[2] ~= ARGV[2] or st[3] ~= ARGV[3] then
  return 'lost'
end
redis.call('PUBLISH', st[4], ARGV[1] .. ' progress ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
return 'ok'
