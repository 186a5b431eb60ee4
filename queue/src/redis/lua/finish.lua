-- finish.lua: a worker ends its lease with `completed` or `failed`, fenced by the lease.
--
-- KEYS[1] job hash              P:job:{id}
-- KEYS[2] worker's in-flight    P:worker:<w>:inflight
-- KEYS[3] image key             P:job:{id}:image
-- ARGV[1] job id
-- ARGV[2] worker id
-- ARGV[3] attempt
-- ARGV[4] 'completed' or 'failed'
-- ARGV[5] failure code (wire spelling; ignored for 'completed')
-- ARGV[6] failure message (ignored for 'completed')
-- Returns 'ok', or the job's state when the lease no longer allows ending it ('cancelled',
-- 'queued' after a reap, ... ; 'missing' when the hash is gone). On every path but a newer
-- lease's, the id leaves our in-flight list.

local st = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempt', 'channel')
if not st[1] then
  -- Released by its gateway (cancelled, delivered) or expired: nothing to end, but the id must
  -- still leave our in-flight list, or it counts as running for good.
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  return 'missing'
end
if st[2] ~= ARGV[2] or st[3] ~= ARGV[3] then
  -- Another lease holds it (a newer attempt, maybe ours again): its in-flight entry is not ours
  -- to remove.
  return st[1]
end
-- The job is ours: it leaves our in-flight list whatever happened to it meanwhile.
redis.call('LREM', KEYS[2], 0, ARGV[1])
if st[1] ~= 'running' then
  return st[1]
end
redis.call('DEL', KEYS[3])
if ARGV[4] == 'completed' then
  redis.call('HSET', KEYS[1], 'state', 'completed')
else
  redis.call('HSET', KEYS[1], 'state', 'failed', 'code', ARGV[5], 'message', ARGV[6])
end
redis.call('PUBLISH', st[4], ARGV[1] .. ' ' .. ARGV[4])
return 'ok'
