-- A fleet's concurrency slots: leases held, and a FIFO queue of waiters.
--
-- KEYS[1] held:    sorted set, permit id -> lease end (server microseconds)
-- KEYS[2] queue:   list of waiting tickets, in order of arrival
-- KEYS[3] waiting: sorted set, ticket -> lease end (a waiter renews it as a holder does)
-- A ticket is "<owner>:<n>"; a grant is pushed to the owner's inbox, KEYS[1] minus
-- ":held" plus ":inbox:<owner>" (the same hash tag, so the same slot).
--
-- ARGV: operation, now (-1: the server's clock), lease (us), max, then
--   acquire <ticket> <queue: 0|1> <id>...  hold a slot now, else queue (1) or refuse
--                                          (0); and renew the ids' leases
--   release <id>                           give back a slot or leave the queue
--   renew <id>...                          extend the leases of held slots and waiting
--                                          tickets
-- Every operation first drops expired leases and hands free slots to the queue's head.
-- Reply: { granted (acquire) or lost leases (renew), free slots, us until the earliest
-- lease ends (-1: none) }.

local held_key, queue_key, waiting_key = KEYS[1], KEYS[2], KEYS[3]
local operation = ARGV[1]
local now = tonumber(ARGV[2])
if now < 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local lease = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local base = string.sub(held_key, 1, -6)
local keep_ms = math.ceil(lease / 1000) * 2 + 1000

redis.call('ZREMRANGEBYSCORE', held_key, '-inf', now)
local held = redis.call('ZCARD', held_key)

-- Free slots go to the oldest live waiters; tickets whose lease ended are skipped.
local function hand_off()
  while held < max do
    local ticket = redis.call('LPOP', queue_key)
    if not ticket then return end
    local ends = redis.call('ZSCORE', waiting_key, ticket)
    redis.call('ZREM', waiting_key, ticket)
    if ends and tonumber(ends) > now then
      redis.call('ZADD', held_key, now + lease, ticket)
      held = held + 1
      local owner = string.match(ticket, '^(.*):[^:]*$')
      local inbox = base .. ':inbox:' .. owner
      redis.call('RPUSH', inbox, ticket)
      redis.call('PEXPIRE', inbox, keep_ms)
    end
  end
end

-- Extends the leases of ARGV[from..]; the count of those that had ended.
local function renew(from)
  local lost = 0
  for i = from, #ARGV do
    local id = ARGV[i]
    if redis.call('ZSCORE', held_key, id) then
      redis.call('ZADD', held_key, now + lease, id)
    elseif redis.call('ZSCORE', waiting_key, id) then
      redis.call('ZADD', waiting_key, now + lease, id)
    else
      -- The lease ended before this renewal: the slot may be someone else's now.
      lost = lost + 1
    end
  end
  return lost
end

hand_off()
local result = 0
if operation == 'acquire' then
  renew(7)
  local ticket = ARGV[5]
  if held < max and redis.call('LLEN', queue_key) == 0 then
    redis.call('ZADD', held_key, now + lease, ticket)
    held = held + 1
    result = 1
  elseif ARGV[6] == '1' then
    redis.call('RPUSH', queue_key, ticket)
    redis.call('ZADD', waiting_key, now + lease, ticket)
  end
elseif operation == 'release' then
  local id = ARGV[5]
  if redis.call('ZREM', held_key, id) == 1 then
    held = held - 1
  end
  if redis.call('ZREM', waiting_key, id) == 1 then
    redis.call('LREM', queue_key, 1, id)
  end
  -- The freed slot goes to the next waiter now, not at the next call.
  hand_off()
elseif operation == 'renew' then
  result = renew(5)
end

for _, key in ipairs({ held_key, queue_key, waiting_key }) do
  redis.call('PEXPIRE', key, keep_ms)
end
local earliest = -1
local first = redis.call('ZRANGE', held_key, 0, 0, 'WITHSCORES')
if first[2] then
  earliest = math.max(0, tonumber(first[2]) - now)
end
return { result, math.max(0, max - held), earliest }
