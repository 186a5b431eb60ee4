-- submit.lua: enqueue a job unless the queue is full (the bound is checked and the job pushed
-- in one atomic step, so concurrent gateways cannot overshoot it).
--
-- KEYS[1] pending list          P:pending
-- KEYS[2] job hash              P:job:{id}
-- KEYS[3] image key             P:job:{id}:image   (already SET by the caller; deleted if full)
-- KEYS[4] client-alive key      P:job:{id}:alive
-- KEYS[5] the submitting gateway's heartbeat key, P:gateway:<g>:alive (created if missing,
--         e.g. after a Redis restart, never extended here: only the gateway's refresher does,
--         so every job of a dead gateway is abandoned at the same moment)
-- ARGV[1] job id
-- ARGV[2] max waiting jobs
-- ARGV[3] job timeout, ms (deadline = now + timeout, by Redis' clock)
-- ARGV[4] notice channel of the submitting gateway
-- ARGV[5] client-alive TTL, ms
-- ARGV[6] grace, ms: how long the job's state outlives its deadline
-- ARGV[7] idle TTL, ms, of the pending list (a deployment unused that long leaves no keys)
-- ARGV[8] the job's options, JSON (`{}`: none; the worker reads them at claim)
-- Returns {1, now_ms} when queued, {0} when full.

if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[3])
  return {0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2],
  'state', 'queued', 'attempt', 1, 'parts', 0,
  'submitted_ms', string.format('%d', now), 'deadline_ms', string.format('%d', deadline),
  'channel', ARGV[4], 'gateway_alive', KEYS[5], 'options', ARGV[8])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[6]))
redis.call('SET', KEYS[4], '1', 'PX', ARGV[5])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[5], 'NX')
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return {1, string.format('%d', now)}
