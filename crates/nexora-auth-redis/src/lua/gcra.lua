-- All the rate limits of one request, all or nothing: nexora_auth::limits::gcra::decide for
-- each limit, line for line, then every state charged only if every limit allowed the request
-- (and its cost is not 0), as InProcessLimits::check_now does.
--
-- KEYS[i]: the state of limit i, a hash {debt, at_us}.
-- ARGV[1]: now in microseconds since the Unix epoch, or '' for Redis's own clock (TIME).
-- ARGV[2]: the cost.
-- ARGV[1 + 2i], ARGV[2 + 2i]: limit i's `limit` and `period_secs`.
-- Returns, per limit: allowed (1/0), debt, at_us, remaining, reset_secs, retry_after_secs.
--
-- Lua numbers are doubles. Every value below is an integer of at most 2^53 (RateLimit bounds
-- limit * period_us by MAX_SCALED = 2^53; debts never exceed the capacity they were charged
-- under; now_us is about 2^51), so every sum, difference and product is exact; divisions go
-- through floor_div, which corrects the rounded quotient to the exact one.

local MICROS = 1000000

local function floor_div(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  while r < 0 do q = q - 1; r = r + b end
  while r >= b do q = q + 1; r = r - b end
  return q
end

local function ceil_div(a, b)
  local q = floor_div(a, b)
  if q * b < a then q = q + 1 end
  return q
end

local function int(x)
  return string.format('%.0f', x)
end

local now_us
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * MICROS + tonumber(t[2])
else
  now_us = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])

local decisions = {}
local all_allowed = true
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + 2 * i])
  local period_secs = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', KEYS[i], 'debt', 'at_us')
  local state_debt = tonumber(state[1]) or 0
  local state_at_us = tonumber(state[2]) or 0

  -- decide(state, now_us, rate, cost):
  local period_us = period_secs * MICROS
  local capacity = limit * period_us
  local elapsed = now_us - state_at_us
  if elapsed < 0 then elapsed = 0 end
  if elapsed > period_us then elapsed = period_us end
  local drained = state_debt - elapsed * limit
  if drained < 0 then drained = 0 end
  -- A debt beyond a lowered limit's capacity counts as full (as in gcra::decide).
  if drained > capacity then drained = capacity end
  -- `need <= capacity` is `cost <= limit`; `drained + need <= capacity` is computed as
  -- `need <= capacity - drained`, which stays below 2^53.
  local allowed = cost <= limit and cost * period_us <= capacity - drained
  local need = 0
  if cost <= limit then need = cost * period_us end
  local debt = drained
  if allowed then debt = drained + need end
  local retry_after_secs = 0
  if allowed then
    retry_after_secs = 0
  elseif cost > limit then
    retry_after_secs = period_secs
  else
    -- drained + need - capacity, as drained - (capacity - need): both terms below 2^53.
    retry_after_secs = ceil_div(ceil_div(drained - (capacity - need), limit), MICROS)
    if retry_after_secs < 1 then retry_after_secs = 1 end
  end
  local at_us = now_us
  if state_at_us > at_us then at_us = state_at_us end
  -- (capacity - debt) / period_us; a debt charged under a larger limit reads as 0 left.
  local remaining = 0
  if debt < capacity then remaining = floor_div(capacity - debt, period_us) end
  local reset_secs = ceil_div(ceil_div(debt, limit), MICROS)

  if not allowed then all_allowed = false end
  decisions[i] = {allowed and 1 or 0, debt, at_us, remaining, reset_secs, retry_after_secs, limit}
end

if all_allowed and cost > 0 then
  for i = 1, #KEYS do
    local d = decisions[i]
    redis.call('HSET', KEYS[i], 'debt', int(d[2]), 'at_us', int(d[3]))
    -- Gone once fully drained: an absent state and a drained one decide alike.
    local drain_ms = ceil_div(ceil_div(d[2], d[7]), 1000)
    if drain_ms < 1 then drain_ms = 1 end
    redis.call('PEXPIRE', KEYS[i], int(drain_ms))
  end
end

local out = {}
for i = 1, #KEYS do
  local d = decisions[i]
  for j = 1, 6 do out[#out + 1] = d[j] end
end
return out
