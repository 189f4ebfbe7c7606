-- The keyed-counter load of bench/keyed_counter.py: each request adds 1 to the counter of one of 100
-- keys, round robin. KEYED_MODE=restate posts JSON to Restate's ingress; otherwise a request/reply PUT
-- of an io.statefun.types/int 1 (bytes 0d 01 00 00 00) to the pystatefun playground ingress.
local mode = os.getenv("KEYED_MODE")
local n = 0

request = function()
  n = n + 1
  local key = "k" .. (n % 100)
  if mode == "restate" then
    return wrk.format("POST", "/counter/" .. key .. "/add", {["Content-Type"] = "application/json"}, "1")
  end
  return wrk.format("PUT", "/bench/counter/" .. key .. "?wait=10",
                    {["Content-Type"] = "application/vnd.io.statefun.types/int"}, "\13\1\0\0\0")
end
