-- wrk script: every request is a fresh Standard Webhooks delivery of the seed
-- example, signed with the secret in $WEBHOOK_SECRET (whsec_...), HMAC-SHA256
-- computed by a helper precomputed table: wrk's LuaJIT has no HMAC, so the
-- signatures are generated ahead of time by sign_requests.py into requests.txt.
local requests = {}
local index = 0

-- Each wrk thread has its own Lua state: give each its own slice of the
-- deliveries, so no delivery is sent twice (a repeat would only hit the
-- webhook-id deduplication, not the write path).
local threads = 0
function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  for line in io.lines(os.getenv("REQUESTS") or "requests.txt") do
    local id, ts, sig, body = line:match("^(.-)\t(.-)\t(.-)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", "/crm/webhooks/interaction", {
      ["Content-Type"] = "application/json",
      ["webhook-id"] = id,
      ["webhook-timestamp"] = ts,
      ["webhook-signature"] = sig,
    }, body)
  end
end
function request()
  -- Threads are started from the one `-t` flag; wrk runs with -t2.
  local slice = math.floor(#requests / 2)
  local first = (thread_number or 0) * slice
  index = index % slice + 1
  return requests[first + index]
end
