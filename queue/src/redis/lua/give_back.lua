-- give_back.lua: not a script of its own; a function prepended to the scripts that return jobs
-- a worker no longer holds (reap.lua: a dead worker's; audit.lua: a live worker's strays).
-- The caller has already taken `id` out of the worker's in-flight list; `job` and `alive` are
-- the job's hash and client-alive keys, both from the caller's KEYS.
--
-- A job that finished, was cancelled or released is dropped; one whose client left is
-- cancelled; one moved but never claimed goes back to the front unchanged (it never ran); one
-- that ran goes back with attempt + 1, or is failed for good (and its gateway told) once it
-- ran `max_attempts` times. Returns 'requeued', 'failed' or 'dropped'.
local function give_back(id, job, alive, pending, max_attempts)
  local st = redis.call('HMGET', job, 'state', 'attempt', 'channel')
  if st[1] ~= 'running' and st[1] ~= 'queued' then
    return 'dropped' -- finished, cancelled, expired or released: nothing to give back
  end
  if redis.call('EXISTS', alive) == 0 then
    redis.call('HSET', job, 'state', 'cancelled')
    return 'dropped'
  end
  if st[1] == 'queued' then
    -- moved to the in-flight list but never claimed: it never ran; the front keeps its turn
    redis.call('RPUSH', pending, id)
    return 'requeued'
  end
  local attempt = redis.call('HINCRBY', job, 'attempt', 1)
  if attempt > tonumber(max_attempts) then
    redis.call('HSET', job, 'state', 'failed', 'code', 'internal',
      'message', 'the job was interrupted ' .. (attempt - 1) .. ' times (worker lost); giving up')
    redis.call('PUBLISH', st[3], id .. ' failed')
    return 'failed'
  end
  redis.call('HSET', job, 'state', 'queued')
  redis.call('HDEL', job, 'worker')
  redis.call('RPUSH', pending, id)
  return 'requeued'
end
