-- wrk: stop each thread after a fixed number of responses (BENCH_REQUESTS), for syscall counts.
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "10000")
local count = 0
local pipeline = tonumber(os.getenv("BENCH_PIPELINE") or "1")

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

response = function(status, headers, body)
   count = count + 1
   if count >= limit then
      wrk.thread:stop()
   end
end
