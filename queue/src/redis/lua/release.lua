-- release.lua: the gateway lets go of a job (its result was delivered, or its client left,
-- or its deadline passed). Nobody will read the job's data again: a waiting job leaves the
-- queue, a running one is cancelled (its worker sees the hash gone at its next check and
-- every later publish of that lease is refused), and all its keys are deleted.
--
-- KEYS[1] pending list          P:pending
-- KEYS[2] job hash              P:job:{id}
-- KEYS[3] client-alive key      P:job:{id}:alive
-- KEYS[4] image key             P:job:{id}:image
-- KEYS[5..] part keys           P:job:{id}:part:<n> for every n
-- ARGV[1] job id
-- Returns the state the job was in ('missing' if its hash was already gone).

local state = redis.call('HGET', KEYS[2], 'state')
if state == 'queued' then
  redis.call('LREM', KEYS[1], 0, ARGV[1])
end
redis.call('DEL', unpack(KEYS, 2))
return state or 'missing'
