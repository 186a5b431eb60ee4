-- reap.lua: return the jobs of one dead worker (its heartbeat key expired) to the queue.
-- Atomic, and a no-op when the worker is alive again, so any number of processes may reap
-- concurrently. Each job goes the way of give_back.lua (prepended to this script).
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
local counts = {requeued = 0, failed = 0, dropped = 0}
while true do
  -- newest first: each one pushed to the front, so the oldest ends up next in line
  local id = redis.call('LPOP', KEYS[3])
  if not id then break end
  local outcome = give_back(id, ARGV[3] .. id, KEYS[4], ARGV[2])
  counts[outcome] = counts[outcome] + 1
end
return {counts.requeued, counts.failed, counts.dropped}
