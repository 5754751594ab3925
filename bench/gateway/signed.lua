-- wrk script: every request is a distinct Standard Webhooks delivery of the
-- seed example, signed ahead of time by sign_requests.py (wrk's LuaJIT has
-- no HMAC). Each wrk thread has its own Lua state and reads its own file
-- ($REQUESTS.<thread>), so no delivery is sent twice: a repeat would only
-- hit the webhook-id deduplication, not the write path. The file holds raw
-- requests separated by NUL bytes.
--
-- The file is read a chunk at a time as requests are sent, not split at
-- start-up: wrk runs each thread's `init` just before it starts that thread,
-- and starts its clock only once every thread runs, so the first thread
-- would send (and have counted) requests during the second one's start-up,
-- which for a file of hundreds of megabytes took over a second.
local CHUNK = 1024 * 1024
local file
local buffer = ""
local position = 1

local threads = 0
function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  local path = (os.getenv("REQUESTS") or "requests") .. "." .. (thread_number or 0)
  file = assert(io.open(path, "rb"))
end

function request()
  local finish = buffer:find("\0", position, true)
  if not finish then
    local chunk = file:read(CHUNK)
    if not chunk then
      -- Every delivery was sent: start over (run.sh refuses such a run).
      file:seek("set", 0)
      chunk = assert(file:read(CHUNK), "no requests in the file")
    end
    buffer = buffer:sub(position) .. chunk
    position = 1
    finish = assert(buffer:find("\0", position, true), "a request longer than a chunk")
  end
  local raw = buffer:sub(position, finish - 1)
  position = finish + 1
  return raw
end

-- With RATE (requests/s in all) and CONNECTIONS set, each connection pauses
-- between requests so that together they would send about that rate if
-- answers took no time (wrk measures latency from send to answer, pause
-- excluded). wrk's pauses are whole milliseconds: a fractional pause is drawn
-- as the two whole values around it, in proportion. run.sh raises RATE until
-- the rate actually held is half the peak.
local rate = tonumber(os.getenv("RATE") or "")
if rate and rate > 0 then
  local pause = 1000 * tonumber(os.getenv("CONNECTIONS") or "64") / rate
  local whole = math.floor(pause)
  local fraction = pause - whole
  function delay()
    if math.random() < fraction then
      return whole + 1
    end
    return whole
  end
end
