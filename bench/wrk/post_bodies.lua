-- POST JSON bodies read from a file (one body per line) to PATH (/predict), each
-- connection cycling through them from its own starting point, and print the
-- figures the harness needs as one JSON line (wrk's own text is for people).
--
--   wrk -s bench/wrk/post_bodies.lua --latency URL -- BODIES_FILE [PATH] [binary]
--
-- With `binary`, BODIES_FILE holds Open Inference binary-extension bodies, each
-- framed as "<json header length> <body length>\n" then the body's bytes (a body
-- may hold any byte, newlines included); each is sent with its
-- Inference-Header-Content-Length.

local requests = {}
local next_index = 1
local threads_started = 0

-- Runs in the main Lua state, once per wrk thread, before init.
function setup(thread)
  thread:set("thread_number", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  local path = args[1]
  local target = args[2] or "/predict"
  if path == nil then
    error("usage: wrk -s post_bodies.lua URL -- BODIES_FILE")
  end
  if args[3] == "binary" then
    local file = assert(io.open(path, "rb"))
    local content = file:read("*a")
    file:close()
    local at = 1
    while at <= #content do
      local header_length, body_length, body_at = content:match("^(%d+) (%d+)\n()", at)
      if header_length == nil then
        error("bad binary body frame at byte " .. at .. " of " .. path)
      end
      local body = content:sub(body_at, body_at + tonumber(body_length) - 1)
      requests[#requests + 1] = wrk.format("POST", target, {
        ["Content-Type"] = "application/octet-stream",
        ["Inference-Header-Content-Length"] = header_length,
      }, body)
      at = body_at + tonumber(body_length)
    end
  else
    for line in io.lines(path) do
      if #line > 0 then
        -- Pre-formatted once: wrk.format per request would cost the load generator CPU.
        requests[#requests + 1] =
          wrk.format("POST", target, { ["Content-Type"] = "application/json" }, line)
      end
    end
  end
  if #requests == 0 then
    error("no request bodies in " .. path)
  end
  -- Threads start at different bodies so they do not send the same rows in step.
  next_index = (thread_number or 0) * 7919 % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end
