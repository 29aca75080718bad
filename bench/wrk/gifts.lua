-- wrk script of bench/accept.py: POST a gift, each request with its own Idempotency-Key.
--   BENCH_TOKENS  the senders' API tokens, comma-separated: requests rotate over them
--   BENCH_RUN     a run label, so keys never repeat across runs on the same database
--   BENCH_EXPECT  the status every answer must have (202); the others are counted and reported
-- done() prints one line, "BENCH {json}", that bench/accept.py reads.

local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or error("BENCH_TOKENS is not set"), "[^,]+") do
  table.insert(tokens, token)
end
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local expect = tonumber(os.getenv("BENCH_EXPECT") or "202")
local threads = {}
local thread_number = 0

function setup(thread)
  thread_number = thread_number + 1
  thread:set("number", thread_number)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  unexpected = 0
  first_unexpected = ""
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  sent = sent + 1
  local id = string.format("%s-%d-%d", run, number, sent)
  -- 1,000 recipients in turn: recipients get history, as in production, without one becoming a hot spot.
  local body = string.format(
    '{"recipient_email": "friend-%d@example.com", "amount": "%d.%02d", "currency": "EUR", "message": "bench"}',
    sent % 1000, 1 + sent % 150, sent % 100
  )
  wrk.headers["Idempotency-Key"] = "bench-" .. id
  wrk.headers["Authorization"] = "Token " .. tokens[1 + (sent + number) % #tokens]
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= expect then
    unexpected = unexpected + 1
    if first_unexpected == "" then
      -- Printable ASCII only: done() writes it into a JSON string.
      first_unexpected = (status .. " " .. string.sub(body or "", 1, 200)):gsub("[^\32-\126]", " ")
    end
  end
end

function done(summary, latency, requests)
  local unexpected_total = 0
  local example = ""
  for _, thread in ipairs(threads) do
    unexpected_total = unexpected_total + thread:get("unexpected")
    local first = thread:get("first_unexpected")
    if example == "" and first ~= nil then example = first end
  end
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"socket_errors": %d, "timeouts": %d, "unexpected": %d, "example": %q}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    unexpected_total, example
  ))
end
