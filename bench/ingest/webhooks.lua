-- webhooks.lua: wrk script for bench/ingest. Sends valid signed ~1.5 KB
-- GOV.UK Pay webhooks, each with its own webhook_message_id, to the URL's
-- path. wrk has no HMAC, so gen.py pre-computes the signatures:
--   wrk -tT ... -s webhooks.lua URL -- DIR T
-- reads DIR/template.json (body with @@MSGID@@ / @@PAYID@@ holes) and
-- DIR/ids.txt ("<message_id> <payment_id> <signature>" per line). wrk
-- thread k of T takes lines k, k+T, k+2T...; a thread that runs out starts
-- its slice again (then ids repeat: done() reports it as "wrapped").
-- done() prints one line "BENCHJSON {...}" for bench.py to read.
-- With WRK_PACE_MS=D in the environment each connection waits on average
-- D ms after every answer before its next request (wrk's delay(); the wait
-- is not part of the latency wrk records): a steady load below saturation.

local threads = {}

-- The wait is random, exponentially distributed with mean D (rounded to
-- whole ms, wrk's unit): the 64 connections then send independently of
-- each other, as GOV.UK Pay's senders do. A fixed D would keep the
-- connections answered by one group commit in step for the whole run,
-- arriving together every D ms, so every request would queue behind a
-- burst that real traffic does not have.
local pace = tonumber(os.getenv("WRK_PACE_MS") or "")
if pace ~= nil and pace > 0 then
   function delay()
      return math.floor(-pace * math.log(1 - math.random()) + 0.5)
   end
end
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   table.insert(threads, thread)
   counter = counter + 1
end

local mids, pids, sigs = {}, {}, {}
local n, i = 0, 0
local head, p0, p1, p2, p3

function init(args)
   local dir = args[1] or error("usage: wrk -tT ... -s webhooks.lua URL -- DIR T")
   local nthreads = tonumber(args[2] or "1")
   math.randomseed(1000 + tid)	-- each thread its own waits, same every run
   local f = assert(io.open(dir .. "/template.json", "rb"))
   local tpl = f:read("*l")
   f:close()
   local a, b = tpl:find("@@MSGID@@", 1, true)
   p0 = tpl:sub(1, a - 1)
   local rest = tpl:sub(b + 1)
   local c, d = rest:find("@@PAYID@@", 1, true)
   p1 = rest:sub(1, c - 1)
   rest = rest:sub(d + 1)
   local e, g = rest:find("@@PAYID@@", 1, true)
   p2 = rest:sub(1, e - 1)
   p3 = rest:sub(g + 1)
   local len = #p0 + #p1 + #p2 + #p3 + 3 * 26
   head = "POST " .. wrk.path .. " HTTP/1.1\r\n" ..
      "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n" ..
      "Content-Type: application/json\r\n" ..
      "Content-Length: " .. len .. "\r\n" ..
      "Pay-Signature: "
   local k = 0
   for line in io.lines(dir .. "/ids.txt") do
      if k % nthreads == tid then
         n = n + 1
         mids[n] = line:sub(1, 26)
         pids[n] = line:sub(28, 53)
         sigs[n] = line:sub(55, 118)
      end
      k = k + 1
   end
   wrapped = 0
   sent = 0
end

function request()
   i = i + 1
   if i > n then
      i = 1
      wrapped = wrapped + 1
   end
   sent = sent + 1
   local pid = pids[i]
   return head .. sigs[i] .. "\r\n\r\n" .. p0 .. mids[i] .. p1 .. pid ..
      p2 .. pid .. p3
end

function done(summary, latency, requests)
   local wraps, built = 0, 0
   for _, t in ipairs(threads) do
      wraps = wraps + (t:get("wrapped") or 0)
      built = built + (t:get("sent") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,' ..
      '"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"p999_us":%d,"max_us":%d,"mean_us":%.1f,"wrapped":%d,' ..
      '"built":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max,
      latency.mean, wraps, built))
end
