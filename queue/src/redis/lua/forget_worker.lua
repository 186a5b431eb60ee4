-- forget_worker.lua: a dead worker whose in-flight list the reaper emptied (reap.lua, one job
-- at a time) leaves the workers set. It stays there while any id is left, so a reaper that
-- stops half-way leaves the rest to the next pass instead of stranding them.
--
-- KEYS[1] workers set           P:workers
-- KEYS[2] worker's heartbeat    P:worker:<w>:alive
-- KEYS[3] worker's in-flight    P:worker:<w>:inflight
-- ARGV[1] worker id
-- Returns 1 when the worker was removed, 0 when it is alive, still holds ids, or another
-- reaper removed it first.

if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('LLEN', KEYS[3]) > 0 then
  return 0
end
return redis.call('SREM', KEYS[1], ARGV[1])
