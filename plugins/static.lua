-- Static discovery: members written in the config, as one discovery source
-- among others (services in the config file's `services` table are merged
-- the same way; this plugin lets a provider block carry them, e.g. next to
-- a Docker provider in one file).
--   providers = { static = { services = {
--       legacy = { targets = { "10.0.0.5:8080", "10.0.0.6:8080" }, balancer = "least_conn" },
--   }, routes = { { rule = "PathPrefix(`/legacy`)", service = "legacy" } } } }
local _M = { type = "discovery" }

function _M.start(ctx)
    for name, s in pairs(ctx.opts.services or {}) do
        local extra = {}
        for k, v in pairs(s) do if k ~= "targets" then extra[k] = v end end
        ctx.set_targets(name, s.targets or {}, extra)
    end
    if ctx.opts.routes then ctx.set_routes(ctx.opts.routes) end
end

return _M
