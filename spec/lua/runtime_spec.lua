-- The worker runtime's per-request state (lua/moongate/runtime.lua): the
-- chain a request started with and its ctx table are forgotten when the
-- request ends, whichever hooks its chain has. The core calls on_log only
-- when told to (on_request's flags, or want_log), so each case below plays
-- the core's part and then counts what is left.
local h = require("moongate.test")
local runtime = require("moongate.runtime")

local function plugins_dir()
    local dir = h.tmpdir()
    local function write(name, text)
        local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
        f:write(text)
        f:close()
    end
    write("resp_only", 'return { type = "middleware", on_response = function() end }')
    write("req_only", 'return { type = "middleware", on_request = function() end }')
    write("uses_ctx", 'return { type = "middleware", on_response = function(conf, req) req.ctx.seen = true end }')
    write("ctx_balancer", [[return { type = "balancer",
        new = function(targets) return { targets = targets } end,
        pick = function(state, req) req.ctx.picked = true return state.targets[1] end }]])
    return dir
end

local version = 1000
local function chains(list)
    version = version + 1
    local lit = "{ [1] = {"
    for _, p in ipairs(list) do lit = lit .. ' { plugin = "' .. p .. '" },' end
    runtime.set_chains(version, lit .. " } }")
    return version
end

-- The core's side of one request: on_request, the pick, on_response when
-- asked, on_log when asked (by the flags or by want_log meanwhile).
local function one_request(v, id, opts)
    local wanted, real = false, runtime.want_log
    runtime.want_log = function() wanted = true end
    local flags = runtime.on_request(v, 1, id)
    if opts and opts.pick then runtime.pick(v, 1, id, 0) end
    if not (opts and opts.failed) and flags % 2 == 1 then runtime.on_response(id) end
    if flags >= 2 or wanted then runtime.on_log(id) end
    runtime.want_log = real
end

describe("runtime per-request state", function()
    after_each(h.cleanup)
    before_each(function() runtime.new_generation(plugins_dir()) end)

    it("forgets a chain that has on_response but no on_log", function()
        local v = chains({ "resp_only" })
        for id = 1, 50 do one_request(v, id) end
        assert.equal(0, runtime.pending())
    end)

    it("forgets it when the response never came (a 502 before any head)", function()
        local v = chains({ "resp_only" })
        for id = 51, 100 do one_request(v, id, { failed = true }) end
        assert.equal(0, runtime.pending())
    end)

    it("forgets a ctx made in on_response", function()
        local v = chains({ "uses_ctx" })
        for id = 101, 150 do one_request(v, id) end
        assert.equal(0, runtime.pending())
    end)

    it("forgets a ctx the balancer made, with no chain at all", function()
        local v = chains({})
        runtime.set_service(v, 1, "svc", "ctx_balancer", "{}", { "a:1" })
        for id = 151, 200 do one_request(v, id, { pick = true }) end
        assert.equal(0, runtime.pending())
    end)

    it("keeps nothing for a chain with on_request only", function()
        local v = chains({ "req_only" })
        for id = 201, 250 do one_request(v, id) end
        assert.equal(0, runtime.pending())
    end)
end)
