-- reap.lua: return one job of a dead worker (its heartbeat key expired) to the queue. The
-- reaper calls it for each id of the worker's in-flight list, then forget_worker.lua. Atomic,
-- and a no-op when the worker is alive again or another reaper took the id first, so any
-- number of processes may reap concurrently. The job goes the way of give_back.lua
-- (prepended to this script).
--
-- KEYS[1] worker's heartbeat    P:worker:<w>:alive
-- KEYS[2] worker's in-flight    P:worker:<w>:inflight
-- KEYS[3] pending list          P:pending
-- KEYS[4] job hash              P:job:{id}
-- KEYS[5] client-alive key      P:job:{id}:alive
-- ARGV[1] job id
-- ARGV[2] max attempts
-- Returns 'requeued', 'failed', 'dropped'; 'alive' when the worker is alive again; 'gone' when
-- the id is no longer in its list.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'alive'
end
if redis.call('LREM', KEYS[2], 0, ARGV[1]) == 0 then
  return 'gone'
end
return give_back(ARGV[1], KEYS[4], KEYS[5], KEYS[3], ARGV[2])
