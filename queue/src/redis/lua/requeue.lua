-- requeue.lua: a worker gives its job back to the front of the queue (attempt + 1),
-- fenced by the lease.
--
-- KEYS[1] job hash              P:job:{id}
-- KEYS[2] worker's in-flight    P:worker:<w>:inflight
-- KEYS[3] pending list          P:pending
-- ARGV[1] job id
-- ARGV[2] worker id
-- ARGV[3] attempt
-- Returns 'ok', or the job's state when the lease is no longer valid ('missing' when the hash
-- is gone). On every path but a newer lease's, the id leaves our in-flight list.

local st = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempt')
if not st[1] then
  -- Released or expired: nothing to give back, but it must leave our in-flight list.
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  return 'missing'
end
if st[2] ~= ARGV[2] or st[3] ~= ARGV[3] then
  return st[1]
end
redis.call('LREM', KEYS[2], 0, ARGV[1])
if st[1] ~= 'running' then
  return st[1]
end
redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'queued')
redis.call('HDEL', KEYS[1], 'worker')
-- The right end is the next one popped: the job keeps its turn.
redis.call('RPUSH', KEYS[3], ARGV[1])
return 'ok'
