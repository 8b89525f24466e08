-- wrk's side of `python -m bench system`: POST /orders (one item, submit: true)
-- as the seeded customers, closed loop or paced at a constant rate.
--
-- bench/system.py writes a copy of this file with these globals set first:
--   path      the endpoint ("/orders", or "/bare" for the baseline)
--   tokens    the customers' access tokens (strings)
--   products  product ids (strings)
--   rate      requests/s of each wrk thread, 0 for none
--   gate      "" for none, or a file the benchmark rewrites several times a
--             second: "<allowed> <pace>", how many POSTs this run may have
--             sent by now (orders final in the read model since it began,
--             plus the orders allowed in flight) and the orders/s that
--             became final over the last second
--   report    where done() writes its JSON
--
-- The requests are formatted once; each one sent is the next of the cycle, so
-- the connections take the customers in turn. With a rate, delay() gives each
-- request a slot of a fixed schedule (open loop): a late answer does not hold
-- the next requests back while a connection is free, and wrk's latency is
-- measured from the request's own send, not from its slot. With a gate, a
-- closed loop over orders rather than requests: a request beyond the allowed
-- waits for the slot at which the pace should allow it, so about as many
-- orders as allowed are in flight between POST and final, whatever the
-- connections. A wait is at most MAX_WAIT_MS: a connection idle for longer
-- would be closed by uvicorn (after 5 s), losing the request sent on it.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local requests = {}
local turn = 0

function init(args)
  for _, product in ipairs(products) do
    local body = '{"items":[{"product_id":"' .. product .. '","quantity":1}],"submit":true}'
    for _, token in ipairs(tokens) do
      local headers = {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }
      requests[#requests + 1] = wrk.format("POST", path, headers, body)
    end
  end
end

function request()
  turn = turn % #requests + 1
  return requests[turn]
end

if rate > 0 then
  local period = 1000 / rate
  local due = nil

  function delay()
    local now = now_ms()
    if due == nil then
      due = now
    else
      due = due + period
    end
    local wait = due - now
    if wait < 0 then
      return 0
    end
    return wait
  end
end

if gate ~= "" then
  local MAX_WAIT_MS = 4000
  local sent, allowed, pace, read_at = 0, 0, 1, -1e9

  local function refresh(now)
    if now - read_at < 20 then
      return
    end
    read_at = now
    local file = io.open(gate, "r")
    if file then
      local a, p = file:read("*n", "*n")
      file:close()
      if a and p then
        allowed, pace = a, math.max(p, 1)
      end
    end
  end

  function delay()
    local now = now_ms()
    refresh(now)
    sent = sent + 1
    if sent <= allowed then
      return 0
    end
    return math.min((sent - allowed) * 1000 / pace, MAX_WAIT_MS)
  end
end

function done(summary, latency)
  local out = assert(io.open(report, "w"))
  local e = summary.errors
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d,'
      .. ' "write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d,'
      .. ' "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean
  ))
  out:close()
end
