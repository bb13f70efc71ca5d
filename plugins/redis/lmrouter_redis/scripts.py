"""The two Lua scripts of the Redis rate limiter: the memory backend's GCRA
(:mod:`lmrouter_ratelimit.gcra`, :class:`lmrouter_ratelimit.backend.MemoryBackend`) run inside
Redis, atomically, on Redis's clock (``TIME``).

One hash per key holds all of its limits, so one script call decides all of a request's limits
together (and the key is one cluster slot). Lua numbers are doubles, exact for integers below
2^53, so the state is kept small instead of as absolute times:

- times are microseconds; one unit costs ``MINUTE_US`` ticks and a microsecond drains
  ``per_minute`` ticks (the memory backend's arithmetic with microseconds for nanoseconds);
- a bucket is its *level* (ticks in use, at most the capacity plus debt: the memory backend's
  ``tat - now``) and the ``per_minute`` it drains at, as of the stamp ``s``;
- a token reservation's mark (for the refund) is a position in a per-key coordinate ``tc`` that
  advances as the bucket drains, kept modulo 2^52 and restarted (a new epoch ``te``) whenever
  the bucket is empty: a mark of an earlier epoch has drained completely.

Fields: ``s`` stamp; ``rl``/``rp`` request level/rate; ``tl``/``tp`` token level/rate; ``tc``,
``ts``, ``te`` token coordinate, shift and epoch; ``a`` requests running. The hash expires once
both buckets are full again and nothing runs (an hour after the last change while a slot is held,
so a host that died holding one leaks it for an hour at most).
"""

from __future__ import annotations

COMMON = r"""
local MIN = 60000000
local MOD = 4503599627370496  -- 2^52
local key = KEYS[1]
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local f = redis.call('HMGET', key, 's', 'rl', 'rp', 'tl', 'tp', 'tc', 'ts', 'te', 'a')
local exists = f[1] ~= false
local s = tonumber(f[1]) or now
local rl, rp = tonumber(f[2]) or 0, tonumber(f[3]) or 0
local tl, tp = tonumber(f[4]) or 0, tonumber(f[5]) or 0
local tc, ts, te = tonumber(f[6]) or 0, tonumber(f[7]) or 0, tonumber(f[8]) or now
local active = tonumber(f[9]) or 0
local elapsed = now - s
if elapsed < 0 then elapsed = 0 end

-- exact integer division of a double below 2^53 (a / b alone may round across an integer)
local function floor_div(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end
local function ceil_div(a, b) return -floor_div(-a, b) end
-- integers as Redis stores them: tostring would write 1.7e+15
local function n(x) return string.format('%.0f', x) end

-- drain `level` for `elapsed` microseconds at `rate` (exact: the product stays below level)
local function drain(level, rate)
  if rate <= 0 or level <= 0 then return 0 end
  if elapsed >= ceil_div(level, rate) then return 0 end
  return level - elapsed * rate
end

rl = drain(rl, rp)
local before = tl
tl = drain(tl, tp)
if tl == 0 then
  if before > 0 or tc ~= 0 or ts ~= 0 then te = math.max(te + 1, now) end
  tc, ts = 0, 0
else
  tc = (tc + (before - tl)) % MOD
end

local function save(rate_r, rate_t)
  if rate_r > 0 then rp = rate_r else rl, rp = 0, 0 end
  if rate_t > 0 then tp = rate_t else tl, tp, tc, ts = 0, 0, 0, 0 end
  local full = 0
  if rp > 0 then full = math.max(full, ceil_div(rl, rp)) end
  if tp > 0 then full = math.max(full, ceil_div(tl, tp)) end
  if active > 0 then full = math.max(full, 3600000000) end
  if full <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 's', n(now), 'rl', n(rl), 'rp', n(rp), 'tl', n(tl), 'tp', n(tp),
    'tc', n(tc), 'ts', n(ts), 'te', n(te), 'a', n(active))
  redis.call('PEXPIRE', key, n(ceil_div(full, 1000) + 1))
end

-- the memory backend's Bucket.try_take on (level, per_minute, capacity)
local function quota(level, per_minute, capacity)
  local room = capacity * MIN
  local left = 0
  if level < room then left = floor_div(room - level, MIN) end
  return left, ceil_div(level, per_minute)
end
"""

# ARGV: now_us (-1: Redis's clock), rpm, rpm_burst, tpm, tpm_burst, max_concurrent, tokens.
# Returns {allowed, r_left, r_reset, t_left, t_reset, reserved, epoch, end, shift, slot,
# refused (0 none, 1 requests, 2 tokens, 3 concurrency), wait_us, requested}.
ADMIT = (
    COMMON
    + r"""
local rpm, rpm_burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local tpm, tpm_burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local concurrent, tokens = tonumber(ARGV[6]), tonumber(ARGV[7])
if tpm <= 0 then tl, tc, ts = 0, 0, 0 end
if rpm <= 0 then rl = 0 end
local wait, refused = 0, 0
local new_rl, new_tl = rl, tl
local r_left, r_reset, t_left, t_reset = -1, -1, -1, -1
local reserve = 0
if rpm > 0 then
  local after = rl + MIN
  local over = after - rpm_burst * MIN
  if over > 0 then wait, refused = ceil_div(over, rpm), 1 else new_rl = after end
  r_left, r_reset = quota(new_rl, rpm, rpm_burst)
end
if tpm > 0 then
  reserve = math.min(tokens, tpm_burst)
  local after = tl + reserve * MIN
  local over = after - tpm_burst * MIN
  if over > 0 then
    local token_wait = ceil_div(over, tpm)
    if token_wait > wait then wait, refused = token_wait, 2 end
  else
    new_tl = after
  end
  t_left, t_reset = quota(new_tl, tpm, tpm_burst)
end
if concurrent > 0 and active >= concurrent then
  wait = math.max(wait, 1000000)
  if refused == 0 then refused = 3 end
end
if refused ~= 0 then
  -- nothing taken: the state as it stays
  if rpm > 0 then r_left, r_reset = quota(rl, rpm, rpm_burst) end
  if tpm > 0 then t_left, t_reset = quota(tl, tpm, tpm_burst) end
  if exists then save(rpm, tpm) end
  return {0, r_left, r_reset, t_left, t_reset, 0, 0, 0, 0, 0, refused, wait, reserve}
end
rl = new_rl
local epoch, mark_end, shift = 0, -1, 0
if tpm > 0 then
  tl = new_tl
  epoch, mark_end, shift = te, (tc + tl) % MOD, ts
end
local slot = 0
if concurrent > 0 then active, slot = active + 1, 1 end
save(rpm, tpm)
return {1, r_left, r_reset, t_left, t_reset, reserve, epoch, mark_end, shift, slot, 0, 0, 0}
"""
)

# ARGV: now_us, rpm, tpm, reserved, used, epoch, end (-1: no mark), shift, slot.
SETTLE = (
    COMMON
    + r"""
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local reserved, used = tonumber(ARGV[4]), tonumber(ARGV[5])
local epoch, mark_end, mark_shift = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local slot = tonumber(ARGV[9])
local delta = 0
if tpm > 0 then delta = used - reserved end
if not exists and delta <= 0 then return 0 end  -- forgotten: full buckets, nothing held
if delta > 0 then
  tl = tl + delta * MIN
elseif delta < 0 and mark_end >= 0 and epoch == te then
  -- the memory backend's Bucket.refund, in this coordinate
  local ahead = (mark_end - ((ts - mark_shift) % MOD) - tc) % MOD
  if ahead > MOD / 2 then ahead = ahead - MOD end
  local back = math.min(-delta * MIN, math.max(ahead, 0))
  local level = math.max(tl - back, 0)
  ts = (ts + (tl - level)) % MOD
  tl = level
end
if slot == 1 and active > 0 then active = active - 1 end
-- as the memory backend, a correction retunes the buckets to the request's limits; a slot
-- freed alone leaves them as they are
if delta ~= 0 then save(rpm, tpm) else save(rp, tp) end
return 1
"""
)
