-- paced.lua: wrk script for bench/soak. Reuses bench/ingest/webhooks.lua
-- (pre-signed ~1.5 KB webhooks, one id each) and adds a steady pace and an
-- end: every connection waits SOAK_DELAY_MS between a reply and its next
-- request, and a thread stops after SOAK_PER_THREAD replies (soak.py then
-- ends wrk with SIGINT, so wrk prints its summary at once).
--   SOAK_WEBHOOKS_LUA=bench/ingest/webhooks.lua SOAK_DELAY_MS=8 \
--   SOAK_PER_THREAD=500000 wrk -t2 -c32 -d900s -s paced.lua URL -- DIR 2
dofile(os.getenv("SOAK_WEBHOOKS_LUA") or error("SOAK_WEBHOOKS_LUA unset"))

local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "8")
local limit = tonumber(os.getenv("SOAK_PER_THREAD") or "0")
local replies = 0

function delay()
   return delay_ms
end

function response(status, headers, body)
   replies = replies + 1
   if limit > 0 and replies >= limit then
      wrk.thread:stop()
   end
end
