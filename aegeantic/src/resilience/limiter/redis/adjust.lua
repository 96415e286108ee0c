-- Changes every window of a limiter outside admission (see limiter/adjust.rs for the
-- arithmetic and why each rule is safe):
--   cap n     at most n tokens left: TAT moves to at least now + tau - n*T (cap 0 drains);
--   refund n  n tokens back: TAT moves earlier by n*T, or by the part of the grant's booked
--             time still ahead of now, if less; never below now, never later. The booked
--             time ended at `end` when granted, and has moved back since by what the
--             window's refund total (field r<i>) grew from `mark`;
--   charge n  n tokens taken without waiting: TAT moves to max(TAT, now) + n*T.
--
-- KEYS[1]  the limiter's hash (see gcra.lua)
-- ARGV[1]  'cap', 'refund' or 'charge'
-- ARGV[2]  n
-- ARGV[3], ARGV[4], ...  per window: emission interval T, tolerance tau, and for a refund
--                        the grant's `end` and `mark` (else 0, 0), in microseconds
local EPOCH = 1735689600

local key = KEYS[1]
local op = ARGV[1]
local n = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = (tonumber(time[1]) - EPOCH) * 1000000 + tonumber(time[2])
local ttl = 0
for i = 1, (#ARGV - 2) / 4 do
  local interval = tonumber(ARGV[4 * i - 1])
  local tolerance = tonumber(ARGV[4 * i])
  local booked_until = tonumber(ARGV[4 * i + 1])
  local mark = tonumber(ARGV[4 * i + 2])
  local tat = tonumber(redis.call('HGET', key, i)) or now
  if op == 'cap' then
    tat = math.max(tat, now + tolerance - math.min(n * interval, tolerance))
  elseif op == 'refund' then
    local refunded = tonumber(redis.call('HGET', key, 'r' .. i)) or 0
    local moved = math.max(refunded - mark, 0)
    local back = math.min(n * interval, math.max(booked_until - moved - now, 0))
    local before = tat
    tat = math.max(tat - back, math.min(tat, now))
    redis.call('HSET', key, 'r' .. i, refunded + before - tat)
  else
    tat = math.max(tat, now) + n * interval
  end
  redis.call('HSET', key, i, tat)
  if tat - now > ttl then
    ttl = tat - now
  end
end
redis.call('PEXPIRE', key, math.ceil(ttl / 1000) + 1000)
return 0
