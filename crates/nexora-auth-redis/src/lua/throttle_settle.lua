-- Settles a login reservation: the Throttle::settle of nexora_auth::throttle.
--
-- KEYS: as for throttle_reserve.lua.
-- ARGV[1]: now in milliseconds, or '' for Redis's own clock (TIME).
-- ARGV[2]: the reservation id. ARGV[3]: 'F' (failed), 'S' (succeeded) or 'R' (released).
-- ARGV[4]: the window (ms). ARGV[5]: the lockout (ms).
-- ARGV[4 + 2i], ARGV[5 + 2i]: subject i's limit, and 'e' (an email) or 'c' (a client).
-- Returns {email locked (1/0), client locked (1/0)}.

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local id = ARGV[2]
local outcome = ARGV[3]
local window = tonumber(ARGV[4])
local lockout = tonumber(ARGV[5])
local n = #KEYS / 2

local function int(x)
  return string.format('%.0f', x)
end

local email_locked, client_locked = 0, 0
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[4 + 2 * i])
  local kind = ARGV[5 + 2 * i]
  -- Nothing to settle on a counter that is gone (its window and reservations expired).
  if redis.call('EXISTS', h) == 1 then
    redis.call('ZREM', z, id)
    local v = redis.call('HMGET', h, 'f', 'ws', 'lu')
    local f = tonumber(v[1]) or 0
    local ws = tonumber(v[2]) or now
    local lu = tonumber(v[3]) or 0
    if outcome ~= 'R' then
      if (lu > 0 and lu <= now) or (lu == 0 and ws + window <= now) then
        f = 0; lu = 0; ws = now
      end
    end
    if outcome == 'F' then
      if f == 0 then ws = now end
      f = f + 1
      if f >= limit and lu == 0 then
        lu = now + lockout
        if kind == 'e' then email_locked = 1 else client_locked = 1 end
      end
    elseif outcome == 'S' and kind == 'e' and lu == 0 then
      -- A right password clears the email's failures (unless it is locked), never the
      -- client's.
      f = 0
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    local in_flight = redis.call('ZCARD', z)
    if f == 0 and in_flight == 0 and lu == 0 then
      redis.call('DEL', h, z)
    else
      redis.call('HSET', h, 'f', int(f), 'ws', int(ws), 'lu', int(lu))
      local ends = ws + window
      if lu > 0 then ends = lu end
      local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
      if last[2] and tonumber(last[2]) > ends then ends = tonumber(last[2]) end
      local ttl = ends - now
      if ttl < 1 then ttl = 1 end
      redis.call('PEXPIRE', h, int(ttl))
      if in_flight > 0 then redis.call('PEXPIRE', z, int(ttl)) end
    end
  end
end
return {email_locked, client_locked}
