-- wrk: send 16 pipelined GETs per round trip (one write), count them all as requests.
init = function(args)
   local r = {}
   for i = 1, 16 do
      r[i] = wrk.format(nil, wrk.path)
   end
   req = table.concat(r)
end

request = function()
   return req
end
