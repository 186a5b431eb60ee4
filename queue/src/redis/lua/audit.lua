-- audit.lua: a live worker reconciles one id of its own in-flight list. Unless the worker
-- holds a live lease on it (same attempt), the id leaves the list and the job goes the way of
-- give_back.lua (prepended to this script): the strays of a BLMOVE or claim whose reply was
-- lost, of a failed put-back, of an ending that never landed are requeued or failed instead of
-- waiting for their deadline.
--
-- KEYS[1] worker's in-flight    P:worker:<w>:inflight
-- KEYS[2] pending list          P:pending
-- KEYS[3] job hash              P:job:{id}
-- KEYS[4] client-alive key      P:job:{id}:alive
-- ARGV[1] job id
-- ARGV[2] worker id
-- ARGV[3] attempt of the worker's live lease on the job, '' when it holds none (the fence:
--         a lease of this worker on that attempt is left alone)
-- ARGV[4] max attempts
-- Returns 'live', 'gone' (no longer in the list), 'requeued', 'failed' or 'dropped'.

local st = redis.call('HMGET', KEYS[3], 'state', 'worker', 'attempt')
if st[1] == 'running' and st[2] == ARGV[2] and st[3] == ARGV[3] then
  return 'live'
end
if redis.call('LREM', KEYS[1], 0, ARGV[1]) == 0 then
  return 'gone'
end
if st[1] == 'running' and st[2] ~= ARGV[2] then
  return 'dropped' -- another worker runs it now: not ours to give back
end
return give_back(ARGV[1], KEYS[3], KEYS[4], KEYS[2], ARGV[4])
