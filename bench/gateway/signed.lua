-- wrk script: every request is a fresh Standard Webhooks delivery of the seed
-- example, signed with the secret in $WEBHOOK_SECRET (whsec_...), HMAC-SHA256
-- computed by a helper precomputed table: wrk's LuaJIT has no HMAC, so the
-- signatures are generated ahead of time by sign_requests.py into requests.txt.
local requests = {}
local index = 0
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
  index = index % #requests + 1
  return requests[index]
end
