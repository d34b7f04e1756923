-- wrk script: POST /payroll to mailer-real with varying shipTo and total;
-- at the end prints one JSON line "BENCH_RESULT {...}" that bench/run reads.
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function request()
   counter = counter + 1
   local body = string.format('{"shipTo":"Bench User %d","total":%d.%02d}',
      counter % 100000, 100 + counter % 900, counter % 100)
   return wrk.format("POST", "/payroll", headers, body)
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
