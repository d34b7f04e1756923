-- wrk script: POST /notifications with a correlation id unique per run
-- (BENCH_NONCE, hex), per wrk thread and per request; at the end prints one
-- JSON line "BENCH_RESULT {...}" that bench/run reads.
local nonce = tonumber(os.getenv("BENCH_NONCE") or "0", 16) or 0
local token = os.getenv("BENCH_TOKEN")
local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

local counter = 0
local headers = { ["Content-Type"] = "application/json" }
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end

function request()
   counter = counter + 1
   local id = string.format("%08x-%04x-4000-8000-%012x", nonce, tid or 0, counter)
   local body = string.format(
      '{"correlationId":"%s","payrollId":%d,"shipTo":"Bench User %d","total":320.00}',
      id, counter, counter % 100000)
   return wrk.format("POST", "/notifications", headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max))
end
