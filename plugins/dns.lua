-- Discovery from DNS: each service's targets are the addresses a host name
-- resolves to, re-resolved every `interval` seconds (for users who are not
-- on Docker: a DNS round-robin name, a Consul DNS interface, ...).
--   providers = { dns = { interval = 10, services = {
--       api = { host = "api.internal", port = 8080 },
--   } } }
-- hosts_file = "/path" reads "address name" lines from a file instead of
-- DNS (tests, or a file managed by another tool).
local mg = require("moongate")

local _M = { type = "discovery" }

local function from_hosts_file(path, host)
    local f = io.open(path)
    if not f then return nil, "cannot read " .. path end
    local out = {}
    for line in f:lines() do
        local addr, names = line:match("^%s*([%x%.:]+)%s+([^#]+)")
        if addr then
            for name in names:gmatch("%S+") do
                if name == host then out[#out + 1] = addr end
            end
        end
    end
    f:close()
    if #out == 0 then return nil, host .. " not in " .. path end
    return out
end

function _M.start(ctx)
    local opts = ctx.opts
    local interval = opts.interval or 10
    local last = {}
    while ctx.alive() do
        for name, s in pairs(opts.services or {}) do
            local addrs, err
            if opts.hosts_file then
                addrs, err = from_hosts_file(opts.hosts_file, s.host)
            else
                addrs, err = mg.resolve(s.host)
            end
            if not ctx.alive() then return end
            if addrs then
                table.sort(addrs)
                local targets = {}
                for i, a in ipairs(addrs) do
                    targets[i] = (a:find(":", 1, true) and ("[" .. a .. "]") or a) .. ":" .. (s.port or 80)
                end
                local key = table.concat(targets, ",")
                if key ~= last[name] then
                    last[name] = key
                    mg.log.info("service ", name, ": ", s.host, " -> ", key)
                    ctx.set_targets(name, targets, { balancer = s.balancer, health = s.health })
                end
            else
                -- keep the last good answer: a resolver hiccup is not an outage
                mg.log.warn("service ", name, ": cannot resolve ", s.host, ": ", tostring(err))
            end
        end
        mg.sleep(interval)
    end
end

return _M
