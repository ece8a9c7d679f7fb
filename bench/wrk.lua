-- The bench's wrk script. Arguments after "--": mode, then per mode, then the number of
-- wrk threads (bench/loadgen.py adds it):
--   get                         GET the URL's path
--   static <body file> <method> one fixed request (the signed PUT to the Finan stand-in)
--   issue <template> <base>     POST an issue for a fresh invoice id per request
--   replay <template> <base> <pool>      issue ids base .. base+pool-1 again, round robin
--   replay-key <template> <base> <pool>  the same, with Idempotency-Key: bench-<id>
-- A template is the issue body with "__INVOICE_ID__" (quotes included) where the id goes.
-- Threads interleave their ids (thread t of n takes t, t+n, t+2n, ...), so no two
-- requests in flight name the same invoice, and a round uses ids base .. base+requests.
-- done() prints one line "BENCH_RESULT {json}" for bench/loadgen.py to read.

local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
end

local mode, prefix, suffix, base, pool, counter, threads

local function read_file(path)
   local file = assert(io.open(path, "rb"))
   local text = file:read("*a")
   file:close()
   return text
end

function init(args)
   mode = args[1]
   threads = tonumber(args[#args])
   counter = 0
   if mode == "static" then
      wrk.body = read_file(args[2])
      wrk.method = args[3]
   elseif mode ~= "get" then
      local text = read_file(args[2])
      local first, last = string.find(text, '"__INVOICE_ID__"', 1, true)
      prefix = string.sub(text, 1, first - 1)
      suffix = string.sub(text, last + 1)
      base = tonumber(args[3])
      if mode ~= "issue" then
         pool = tonumber(args[4])
      end
   end
end

function request()
   if mode == "get" then
      return wrk.format("GET")
   elseif mode == "static" then
      return wrk.format()
   end
   local n = counter * threads + thread_index
   counter = counter + 1
   local id
   if mode == "issue" then
      id = base + n
   else
      id = base + n % pool
   end
   local path = "/api/v1/invoices/" .. id .. "/issue"
   local body = prefix .. id .. suffix
   if mode == "replay-key" then
      local headers = {}
      for name, value in pairs(wrk.headers) do
         headers[name] = value
      end
      headers["Idempotency-Key"] = "bench-" .. id
      return wrk.format("POST", path, headers, body)
   end
   return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,' ..
      '"write":%d,"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,' ..
      '"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
