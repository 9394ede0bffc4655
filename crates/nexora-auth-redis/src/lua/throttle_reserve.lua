-- Reserves one login attempt on every subject, all or nothing: the Throttle::reserve_subjects
-- of nexora_auth::throttle, with the reservations in flight kept one by one so that those of a
-- crashed instance expire (a window after they were granted).
--
-- KEYS[2i - 1]: subject i's counter, a hash {f = failures, ws = window start, lu = locked
--   until (0: not locked)}, times in milliseconds since the Unix epoch.
-- KEYS[2i]: subject i's reservations in flight, a sorted set of ids scored by their expiry.
-- ARGV[1]: now in milliseconds, or '' for Redis's own clock (TIME).
-- ARGV[2]: the reservation id. ARGV[3]: the window (ms). ARGV[4]: the lockout (ms).
-- ARGV[4 + i]: subject i's limit.
-- Returns {1, 0} when reserved, {0, retry_after_secs} when refused.

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local id = ARGV[2]
local window = tonumber(ARGV[3])
local n = #KEYS / 2

local function int(x)
  return string.format('%.0f', x)
end

local counters = {}
local wait = 0
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[4 + i])
  local v = redis.call('HMGET', h, 'f', 'ws', 'lu')
  local f = tonumber(v[1]) or 0
  local ws = tonumber(v[2]) or now
  local lu = tonumber(v[3]) or 0
  -- Counter::refresh: a lock or a window that has ended forgets the failures.
  if (lu > 0 and lu <= now) or (lu == 0 and ws + window <= now) then
    f = 0; lu = 0; ws = now
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  local in_flight = redis.call('ZCARD', z)
  if lu > 0 then
    if lu - now > wait then wait = lu - now end
  elseif f + in_flight >= limit then
    if wait < 1 then wait = 1 end
  end
  counters[i] = {f, ws, lu}
end

if wait > 0 then
  -- Whole seconds, rounded up, never 0.
  local secs = math.floor((wait + 999) / 1000)
  if secs < 1 then secs = 1 end
  return {0, secs}
end

for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local c = counters[i]
  redis.call('HSET', h, 'f', int(c[1]), 'ws', int(c[2]), 'lu', int(c[3]))
  redis.call('ZADD', z, int(now + window), id)
  -- Kept while the window, the lock or a reservation lasts.
  local ends = c[2] + window
  if c[3] > 0 then ends = c[3] end
  if now + window > ends then ends = now + window end
  local ttl = ends - now
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', h, int(ttl))
  redis.call('PEXPIRE', z, int(ttl))
end
return {1, 0}
