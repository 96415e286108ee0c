-- Multi-window GCRA: check and charge every window of one limiter atomically.
--
-- KEYS[1]  a hash holding one theoretical arrival time (TAT) per window, in integer
--          microseconds since EPOCH
-- ARGV[1]  cost: tokens requested
-- ARGV[2]  max_wait: the longest reservation to accept, in microseconds (0: admit now or deny)
-- ARGV[3]  now in microseconds since EPOCH, or -1 to read the server clock (tests pass a value)
-- ARGV[4], ARGV[5], ...  per window: emission interval T, tolerance tau (= capacity * T)
--
-- Returns {admitted (1/0), wait_us, remaining tokens * 1e6, now_us, and when admitted each
-- window's new TAT, then each window's refund total}. When admitted the caller
-- sleeps wait_us on its own clock and proceeds; when denied nothing was written and wait_us
-- says when the request would fit.
--
-- Numbers reach redis.call as numbers, never through tostring(), which keeps 14 digits only;
-- microseconds since a 2025 epoch stay far below 2^53, where doubles count exactly.
local EPOCH = 1735689600

local key = KEYS[1]
local cost = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local time = redis.call('TIME')
  now = (tonumber(time[1]) - EPOCH) * 1000000 + tonumber(time[2])
end

local windows = (#ARGV - 3) / 2
local fields = {}
for i = 1, windows do
  fields[i] = i
end
local stored = redis.call('HMGET', key, unpack(fields))

local tats, wait = {}, 0
for i = 1, windows do
  local interval, tolerance = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local tat = tonumber(stored[i]) or now
  if tat < now then
    tat = now
  end
  tats[i] = tat
  local window_wait = tat + cost * interval - tolerance - now
  if window_wait > wait then
    wait = window_wait
  end
end

local function remaining(at)
  local least = nil
  for i = 1, windows do
    local interval, tolerance = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
    local tat = tats[i]
    if tat < at then
      tat = at
    end
    local tokens = (tolerance - (tat - at)) / interval
    if least == nil or tokens < least then
      least = tokens
    end
  end
  if least < 0 then
    least = 0
  end
  return math.floor(least * 1000000)
end

if wait > max_wait then
  return {0, wait, remaining(now), now}
end

-- Charge at the admission instant, not at `now`, so that a reservation leaves the faster
-- windows exactly as if the request had arrived when it is admitted.
local at = now + wait
local ttl = 0
for i = 1, windows do
  local interval = tonumber(ARGV[2 + 2 * i])
  local tat = tats[i]
  if tat < at then
    tat = at
  end
  tat = tat + cost * interval
  tats[i] = tat
  redis.call('HSET', key, i, tat)
  if tat - now > ttl then
    ttl = tat - now
  end
end
-- Once every window is full again the key carries no information: let it expire.
redis.call('PEXPIRE', key, math.ceil(ttl / 1000) + 1000)
-- The windows' new TATs end the time this grant booked, and their refund totals say how far
-- later refunds will have moved it: together they bound a refund (see adjust.lua).
local reply = {1, wait, remaining(at), now}
for i = 1, windows do
  reply[4 + i] = tats[i]
  reply[4 + windows + i] = tonumber(redis.call('HGET', key, 'r' .. i)) or 0
end
return reply
