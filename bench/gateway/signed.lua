-- wrk script: every request is a distinct Standard Webhooks delivery of the
-- seed example, signed ahead of time by sign_requests.py (wrk's LuaJIT has
-- no HMAC). Each wrk thread has its own Lua state and reads its own file
-- ($REQUESTS.<thread>), so no delivery is sent twice: a repeat would only
-- hit the webhook-id deduplication, not the write path. The file holds raw
-- requests separated by NUL bytes, so start-up is one read and one split.
local requests = {}
local index = 0

local threads = 0
function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  local path = (os.getenv("REQUESTS") or "requests") .. "." .. (thread_number or 0)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  for raw in data:gmatch("([^%z]+)%z") do
    requests[#requests + 1] = raw
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
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
