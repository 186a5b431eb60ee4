-- claim.lua: a worker takes the job it just moved (BLMOVE) into its in-flight list, unless
-- nobody waits for it any more; then the job is dropped from the list and skipped.
--
-- KEYS[1] job hash              P:job:{id}
-- KEYS[2] worker's in-flight    P:worker:<w>:inflight
-- KEYS[3] client-alive key      P:job:{id}:alive
-- KEYS[4] image key             P:job:{id}:image
-- KEYS[5] its gateway's heartbeat key, P:gateway:<g>:alive, as the caller read it from the
--         hash's field gateway_alive (set once by submit.lua, never changed); absent when the
--         hash has none. The job is abandoned when that key or its own client-alive key is gone.
-- ARGV[1] job id
-- ARGV[2] worker id
-- Returns {'ok', attempt, submitted_ms, deadline_ms, now_ms, channel, gateway heartbeat key,
--         options JSON}
--      or {'skip', reason}  (the job was dropped from the in-flight list)
--      or {'gone'}          (not in our in-flight list any more: a reaper took it back)

if not redis.call('LPOS', KEYS[2], ARGV[1]) then
  return {'gone'}
end
local st = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'submitted_ms', 'deadline_ms', 'channel',
  'gateway_alive', 'options')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local skip = nil
if not st[1] then
  skip = 'missing'
elseif st[1] ~= 'queued' then
  skip = st[1]
elseif redis.call('EXISTS', KEYS[3]) == 0 or not KEYS[5] or st[6] ~= KEYS[5]
    or redis.call('EXISTS', KEYS[5]) == 0 then
  skip = 'abandoned'
elseif tonumber(st[4]) <= now then
  skip = 'expired'
end
if skip then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  redis.call('DEL', KEYS[4])
  if st[1] == 'queued' and skip == 'expired' then
    -- an honest code: nobody cancelled it, its time ran out while it waited
    redis.call('HSET', KEYS[1], 'state', 'failed', 'code', 'timeout',
      'message', 'the job waited past its deadline in the queue')
    redis.call('PUBLISH', st[5], ARGV[1] .. ' failed')
  elseif st[1] == 'queued' then
    redis.call('HSET', KEYS[1], 'state', 'cancelled')
  end
  return {'skip', skip}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[2])
redis.call('PUBLISH', st[5], ARGV[1] .. ' started ' .. st[2])
return {'ok', st[2], st[3], st[4], string.format('%d', now), st[5], st[6], st[7] or '{}'}
