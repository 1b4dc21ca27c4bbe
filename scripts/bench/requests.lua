-- wrk: BENCH_PIPELINE requests per write (default 1), every one counted as a request; with
-- BENCH_REQUESTS set, stop sending after that many responses (for syscall counts; wrk itself
-- still runs its full duration).
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "0")
local pipeline = tonumber(os.getenv("BENCH_PIPELINE") or "1")
local count = 0

init = function(args)
   local r = {}
   for i = 1, pipeline do
      r[i] = wrk.format(nil, wrk.path)
   end
   req = table.concat(r)
end

request = function()
   return req
end

if limit > 0 then
   response = function(status, headers, body)
      count = count + 1
      if count >= limit then
         wrk.thread:stop()
      end
   end
end
