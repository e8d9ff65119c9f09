-- A plugin's globals: each plugin file runs in an environment of its own
-- that does not fall through to _G (lua/moongate/plugin_env.lua). Its
-- global writes stay in it; a name it was not given raises an error.
local h = require("spec.helpers")
local plugins = require("moongate.plugins")

local function plugin_dir(files)
    local dir = h.tmpdir()
    for name, src in pairs(files) do h.write_file(dir .. "/" .. name .. ".lua", src) end
    return dir
end

describe("the plugin environment", function()
    after_each(h.cleanup)

    it("keeps a plugin's global writes out of _G and out of other plugins", function()
        local dir = plugin_dir({
            writer = [[
                stray = "from writer"
                local _M = { type = "middleware" }
                function _M.write() also_stray = 42; _G.via_g = true end
                function _M.read() return stray, also_stray, via_g end
                return _M
            ]],
            reader = [[
                local _M = { type = "middleware" }
                function _M.read(name) return pcall(function() return _G[name] end) end
                return _M
            ]],
        })
        local w = assert(plugins.load("writer", dir, "middleware"))
        local r = assert(plugins.load("reader", dir, "middleware"))
        w.write()
        assert.same({ "from writer", 42, true }, { w.read() })
        for _, name in ipairs({ "stray", "also_stray", "via_g" }) do
            assert.is_nil(rawget(_G, name), name)
            local ok, err = r.read(name)
            assert.is_false(ok, name)
            assert.truthy(tostring(err):find("unknown global '" .. name .. "'", 1, true), tostring(err))
        end
    end)

    it("gives every load of a plugin a fresh environment", function()
        local dir = plugin_dir({ counter = [[
            n = (rawget(_G, "n") or 0) + 1
            return { type = "middleware", n = function() return n end }
        ]] })
        assert.equal(1, assert(plugins.load("counter", dir)).n())
        assert.equal(1, assert(plugins.load("counter", dir)).n())
    end)

    it("raises an error naming an unknown global, at the line that reads it", function()
        local dir = plugin_dir({ typo = "local x = 1\nlocal y = strnig.format('%d', x)\nreturn {}\n" })
        local mod, err = plugins.load("typo", dir)
        assert.is_nil(mod)
        assert.truthy(err:find("typo.lua:2: unknown global 'strnig'", 1, true), err)
    end)

    it("gives the standard names plugins need", function()
        local dir = plugin_dir({ std = [[
            local seen = {}
            for _, k in ipairs({ "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
                                 "rawequal", "rawget", "rawset", "require", "select", "setmetatable",
                                 "tonumber", "tostring", "type", "unpack", "xpcall", "print" }) do
                seen[k] = type(_G[k])
            end
            for _, lib in ipairs({ "string", "table", "math", "coroutine", "bit", "os", "io", "jit" }) do
                seen[lib] = type(_G[lib])
            end
            seen.os_time, seen.os_clock, seen.os_date = type(os.time), type(os.clock), type(os.date)
            seen.os_exit, seen.os_execute = type(os.exit), type(os.execute)
            seen.loadstring = pcall(function() return loadstring end)
            seen.mg_now = type(require("moongate").now)
            return { type = "middleware", seen = seen }
        ]] })
        local seen = assert(plugins.load("std", dir)).seen
        for _, k in ipairs({ "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
                             "rawequal", "rawget", "rawset", "require", "select", "setmetatable",
                             "tonumber", "tostring", "type", "unpack", "xpcall", "print",
                             "os_time", "os_clock", "os_date", "mg_now" }) do
            assert.equal("function", seen[k], k)
        end
        for _, lib in ipairs({ "string", "table", "math", "coroutine", "bit", "os", "io", "jit" }) do
            assert.equal("table", seen[lib], lib)
        end
        assert.equal("nil", seen.os_exit)
        assert.equal("nil", seen.os_execute)
        assert.is_false(seen.loadstring)
    end)

    it("gives each plugin its own copy of the standard libraries", function()
        local dir = plugin_dir({ patcher = [[
            string.shout = function(s) return s:upper() end
            table.insert = nil
            return { type = "middleware", shout = string.shout }
        ]] })
        local mod = assert(plugins.load("patcher", dir))
        assert.equal("HI", mod.shout("hi"))
        assert.is_nil(string.shout)
        assert.is_function(table.insert)
    end)

    it("keeps the core's C functions out of a plugin's reach except through moongate", function()
        local dir = plugin_dir({ probe = [[
            local ok = pcall(function() return __mg_io end)
            return { type = "middleware", global = ok, json = require("moongate").json.encode({ 1 }) }
        ]] })
        local mod = assert(plugins.load("probe", dir))
        assert.is_false(mod.global)
        assert.equal("[1]", mod.json)
    end)

    it("isolates two middlewares on one request through the gateway", function()
        local b = h.start_backend()
        local gw = h.start_gateway({
            config = {
                services = { api = { targets = { b.address } } },
                routes = { { rule = "PathPrefix(`/`)", service = "api",
                             middlewares = { { plugin = "setter" }, { plugin = "getter" } } } },
            },
            plugins = {
                setter = [[
                    return { type = "middleware", on_request = function(conf, req)
                        leaked = "yes"
                    end }
                ]],
                getter = [[
                    return { type = "middleware", on_request = function(conf, req)
                        local ok, v = pcall(function() return leaked end)
                        req:respond(200, ok and ("seen " .. tostring(v)) or "not seen")
                    end }
                ]],
            },
        })
        local r = h.request(gw.port, {})
        assert.equal(200, r.status)
        assert.equal("not seen", r.body)
    end)
end)
