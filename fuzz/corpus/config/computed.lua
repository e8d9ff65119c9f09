local n = tonumber(os.getenv("MG_FUZZ_N") or "3")
local targets = {}
for i = 1, n do targets[#targets + 1] = string.format("127.0.0.1:%d", 9000 + i) end
return { services = { web = { targets = targets } },
         routes = { { rule = "Host(`" .. ("x"):rep(3) .. "`)", service = "web" } } }
