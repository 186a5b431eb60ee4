-- reap.lua: return the jobs of one dead worker (its heartbeat key expired) to the queue.
-- Atomic, and a no-op when the worker is alive again, so any number of processes may reap
-- concurrently. A job that ran `max_attempts` times is failed for good (poison pill) and its
-- gateway told; a job whose client left is dropped.
--
-- KEYS[1] workers set           P:workers
-- KEYS[2] worker's heartbeat    P:worker:{w}:alive
-- KEYS[3] worker's in-flight    P:worker:{w}:inflight
-- KEYS[4] pending list          P:pending
-- ARGV[1] worker id
-- ARGV[2] max attempts
-- ARGV[3] job key prefix        P:job:   (job hash = prefix .. id, client-alive = prefix .. id .. ':alive')
-- Returns {requeued, failed, dropped}, or {-1} when the worker is alive or another reaper
-- got to it first.

if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
  return {-1}
end
local requeued, failed, dropped = 0, 0, 0
while true do
  -- newest first: each one pushed to the front, so the oldest ends up next in line
  local id = redis.call('LPOP', KEYS[3])
  if not id then break end
  local job = ARGV[3] .. id
  local st = redis.call('HMGET', job, 'state', 'attempt', 'channel')
  if st[1] ~= 'running' and st[1] ~= 'queued' then
    dropped = dropped + 1 -- finished, cancelled or expired: nothing to give back
  elseif redis.call('EXISTS', job .. ':alive') == 0 then
    redis.call('HSET', job, 'state', 'cancelled')
    dropped = dropped + 1
  elseif st[1] == 'queued' then
    -- moved to the in-flight list but never claimed: it never ran
    redis.call('RPUSH', KEYS[4], id)
    requeued = requeued + 1
  else
    local attempt = redis.call('HINCRBY', job, 'attempt', 1)
    if attempt > tonumber(ARGV[2]) then
      redis.call('HSET', job, 'state', 'failed', 'code', 'internal',
        'message', 'the job was interrupted ' .. (attempt - 1) .. ' times (worker lost); giving up')
      redis.call('PUBLISH', st[3], id .. ' failed')
      failed = failed + 1
    else
      redis.call('HSET', job, 'state', 'queued')
      redis.call('HDEL', job, 'worker')
      redis.call('RPUSH', KEYS[4], id)
      requeued = requeued + 1
    end
  end
end
return {requeued, failed, dropped}
