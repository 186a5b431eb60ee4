-- publish_part.lua: make result part `seq` visible to the gateway, fenced by the lease.
-- The bytes were written by the caller to the attempt's staging key; this renames it into
-- place (O(1): large payloads never pass through Lua) and sends a small notice.
--
-- KEYS[1] job hash              P:job:{id}
-- KEYS[2] staging key           P:job:{id}:part:<seq>:a<attempt>
-- KEYS[3] part key              P:job:{id}:part:<seq>
-- ARGV[1] job id
-- ARGV[2] worker id             } the lease: both must still match the job's hash,
-- ARGV[3] attempt               } so a worker presumed dead cannot publish
-- ARGV[4] seq (0-based protocol position)
-- Returns 'ok', 'duplicate' (an earlier attempt stored it: identical bytes, dropped),
--         'cancelled' (released by its gateway or cancelled: nobody wants it),
--         'lost' (the lease is no longer valid: taken back) or 'out_of_order'.

local st = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempt', 'parts', 'channel')
if not st[1] or st[1] == 'cancelled' then
  redis.call('DEL', KEYS[2])
  return 'cancelled'
end
if st[1] ~= 'running' or st[2] ~= ARGV[2] or st[3] ~= ARGV[3] then
  redis.call('DEL', KEYS[2])
  return 'lost'
end
local seq = tonumber(ARGV[4])
local parts = tonumber(st[4])
if seq < parts then
  redis.call('DEL', KEYS[2])
  return 'duplicate'
end
if seq > parts or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  return 'out_of_order'
end
redis.call('RENAME', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'parts', seq + 1)
redis.call('PUBLISH', st[5], ARGV[1] .. ' part ' .. ARGV[4])
return 'ok'
