-- A fleet's retry budget: one hash of earned retries and a time-refilled reserve, in
-- millionths of a retry.
--
-- ARGV: deposits (new requests since the last call), want (retries asked for), ratio
-- (earned per request), max_balance, per_second (reserve refill, a second's worth held),
-- now (-1: the server's clock, microseconds).
-- Reply: { retries granted, the earned balance left }.

local key = KEYS[1]
local deposits, want = tonumber(ARGV[1]), tonumber(ARGV[2])
local ratio, max_balance, per_second = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = tonumber(ARGV[6])
if now < 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local retry = 1000000

local state = redis.call('HMGET', key, 'balance', 'reserve', 'at')
local balance = tonumber(state[1]) or 0
local reserve = tonumber(state[2]) or per_second
local at = tonumber(state[3]) or now

balance = math.min(balance + deposits * ratio, max_balance)
reserve = math.min(reserve + math.max(0, now - at) * per_second / 1000000, per_second)
local earned = math.min(want, math.floor(balance / retry))
balance = balance - earned * retry
local reserved = math.min(want - earned, math.floor(reserve / retry))
reserve = reserve - reserved * retry

redis.call('HSET', key, 'balance', balance, 'reserve', reserve, 'at', now)
-- An idle budget is forgotten after an hour; it would have refilled its reserve anyway.
redis.call('PEXPIRE', key, 3600000)
return { earned + reserved, math.floor(balance) }
