-- Empties every window of a limiter: each TAT moves to at least now + tau, the instant at
-- which an empty bucket is full again. Requests already booked further ahead keep their
-- slots.
--
-- KEYS[1]  the limiter's hash (see gcra.lua)
-- ARGV[1], ARGV[2], ...  per window: emission interval T, tolerance tau, in microseconds
local EPOCH = 1735689600

local key = KEYS[1]
local time = redis.call('TIME')
local now = (tonumber(time[1]) - EPOCH) * 1000000 + tonumber(time[2])
local ttl = 0
for i = 1, #ARGV / 2 do
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('HGET', key, i)) or now
  if tat < now + tolerance then
    tat = now + tolerance
  end
  redis.call('HSET', key, i, tat)
  if tat - now > ttl then
    ttl = tat - now
  end
end
redis.call('PEXPIRE', key, math.ceil(ttl / 1000) + 1000)
return 0
