-- A fleet's circuit breaker: the state, the window of recent outcomes and the probes out,
-- changed for everyone at once.
--
-- KEYS[1] state:  hash of state (0 closed, 1 open, 2 half-open), gen, open_until (us),
--                 failures, probes_ok, ratio (millionths, of the last opening)
-- KEYS[2] window: list of recent outcomes in the closed state ('1' a failure)
-- KEYS[3] probes: sorted set of probes out in the half-open state -> lease end (us)
--
-- ARGV: now (-1: the server's clock), window, minimum_calls, failure_ratio (millionths),
-- open_duration (us), half_open_probes, probe_lease (us), want_probe (0|1), probe id
-- ("<caller>:<n>"), the channel on which a change of state, and a failure added to the
-- window, is published ("gen:state:us until a probe:ratio:calls:failures:caller", as in
-- the reply), then reports: "c:<gen>:<0|1>" a closed call's outcome, "p:<gen>:<id>:<0|1>"
-- a probe's, "x:<gen>:<id>" a probe dropped unreported. A report of another generation is
-- ignored.
-- Reply: { state, gen, us until an open breaker lets a probe through (-1: not open),
-- granted probe (0|1), ratio of the last opening (millionths, -1: none), calls and
-- failures in the window }.

local state_key, window_key, probes_key = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
if now < 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local window, minimum = tonumber(ARGV[2]), tonumber(ARGV[3])
local threshold, open_duration = tonumber(ARGV[4]), tonumber(ARGV[5])
local probes, lease = tonumber(ARGV[6]), tonumber(ARGV[7])
local want_probe, probe_id, channel = ARGV[8] == '1', ARGV[9], ARGV[10]

local s = redis.call('HMGET', state_key, 'state', 'gen', 'open_until', 'failures', 'probes_ok', 'ratio')
local state = tonumber(s[1]) or 0
local gen = tonumber(s[2]) or 0
local gen_before = gen
local failed = false
local open_until = tonumber(s[3]) or 0
local failures = tonumber(s[4]) or 0
local probes_ok = tonumber(s[5]) or 0
local ratio = tonumber(s[6]) or -1

local function enter(to)
  state = to
  gen = gen + 1
  failures = 0
  probes_ok = 0
  redis.call('DEL', window_key, probes_key)
end

local function open(with_ratio)
  open_until = now + open_duration
  ratio = with_ratio
  enter(1)
end

for i = 11, #ARGV do
  local report = ARGV[i]
  local kind, at, rest = string.match(report, '^(%a):(%d+):(.*)$')
  if tonumber(at) == gen then
    if kind == 'c' and state == 0 then
      redis.call('RPUSH', window_key, rest)
      if rest == '1' then
        failures = failures + 1
        failed = true
      end
      if redis.call('LLEN', window_key) > window then
        if redis.call('LPOP', window_key) == '1' then failures = failures - 1 end
      end
      local calls = redis.call('LLEN', window_key)
      if calls >= minimum and failures * 1000000 >= threshold * calls then
        open(math.floor(failures * 1000000 / calls))
      end
    elseif kind == 'p' and state == 2 then
      local id, outcome = string.match(rest, '^(.*):([01])$')
      if redis.call('ZREM', probes_key, id) == 1 then
        if outcome == '1' then
          open(-1)
        else
          probes_ok = probes_ok + 1
          if probes_ok >= probes then enter(0) end
        end
      end
    elseif kind == 'x' and state == 2 then
      redis.call('ZREM', probes_key, rest)
    end
  end
end

local granted = 0
if want_probe then
  if state == 1 and now >= open_until then enter(2) end
  if state == 2 then
    -- A probe whose holder never reported frees its place when its lease ends.
    redis.call('ZREMRANGEBYSCORE', probes_key, '-inf', now)
    if redis.call('ZCARD', probes_key) + probes_ok < probes then
      redis.call('ZADD', probes_key, now + lease, probe_id)
      granted = 1
    end
  end
end

redis.call('HSET', state_key, 'state', state, 'gen', gen, 'open_until', open_until,
  'failures', failures, 'probes_ok', probes_ok, 'ratio', ratio)
local keep = math.max(open_duration, lease) / 1000 + 3600000
for _, key in ipairs({ state_key, window_key, probes_key }) do
  redis.call('PEXPIRE', key, math.ceil(keep))
end
local remaining = -1
if state == 1 then remaining = math.max(0, open_until - now) end
local calls = redis.call('LLEN', window_key)
if gen ~= gen_before or (failed and state == 0) then
  -- The caller's probe ids start with its name: it takes the window from the reply.
  local caller = string.match(probe_id, '^[^:]*')
  redis.call('PUBLISH', channel,
    table.concat({ gen, state, remaining, ratio, calls, failures, caller }, ':'))
end
return { state, gen, remaining, granted, ratio, calls, failures }
