-- The command line: version, help, check, the embedded default, signals.
local h = require("spec.helpers")
local socket = require("socket")

local function run(args)
    local f = io.popen(h.bin .. " " .. args .. " 2>&1; echo \"rc=$?\"")
    local out = f:read("*a")
    f:close()
    local rc = tonumber(out:match("rc=(%d+)%s*$"))
    return rc, out:gsub("rc=%d+%s*$", "")
end

local function config_file(src)
    local dir = h.tmpdir()
    h.write_file(dir .. "/moongate.lua", src)
    return dir .. "/moongate.lua"
end

describe("moongate CLI", function()
    after_each(h.cleanup)

    it("prints its version", function()
        local rc, out = run("version")
        assert.equal(0, rc)
        assert.truthy(out:match("^moongate %d+%.%d+%.%d+"))
    end)

    it("prints usage with --help", function()
        local rc, out = run("--help")
        assert.equal(0, rc)
        assert.truthy(out:find("moongate check", 1, true))
    end)

    it("accepts a valid config with check", function()
        local path = config_file([[
return {
  listen = "127.0.0.1:18099",
  services = { api = { targets = { "127.0.0.1:9001" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api" } },
}]])
        local rc, out = run("check -c " .. path)
        assert.equal(0, rc, out)
    end)

    local mistakes = {
        { "an unknown key", "return {\n  listen = \"127.0.0.1:1\",\n  wrokers = 2,\n}", 3, "unknown key 'wrokers' %(did you mean 'workers'%?%)" },
        { "a wrong type", "return {\n  services = {\n    api = {\n      targets = { { address = \"127.0.0.1:1\", weight = \"3\" } },\n    },\n  },\n}", 4, "weight: expected an integer" },
        { "a bad rule", "return {\n  services = { api = { targets = { \"127.0.0.1:1\" } } },\n  routes = {\n    { rule = \"Hots(`a`)\", service = \"api\" },\n  },\n}", 4, "unknown matcher 'Hots'" },
        { "an unknown service", "return {\n  services = { api = { targets = { \"127.0.0.1:1\" } } },\n  routes = {\n    { rule = \"PathPrefix(`/`)\",\n      service = \"apii\" },\n  },\n}", 5, "unknown service 'apii'" },
        { "a missing balancer plugin", "return {\n  services = {\n    api = { balancer = \"nope\", targets = { \"127.0.0.1:1\" } },\n  },\n}", 3, "no plugin 'nope'" },
        { "a Lua syntax error", "return {\n  listen = ,\n}", 2, "unexpected symbol" },
        -- found by fuzz/fuzz_config.c: errors that carried no position
        { "an error raised without a position", "local x = 1\nerror(\"stop here\", 0)\n", 2, "stop here" },
        { "an error raised with a table", "\n\nerror({ code = 1 })\n", 3, "error table" },
        { "a config that loops forever", "local n = 0\nwhile true do n = n + 1 end\n", 2, "ran too long" },
        -- the line mapper looped on a table Lua never sees (a '#' first line)
        { "a config that is one '#' line", "#return { routes = { { rule =) \"PathPrefix(`/`)\" } } }\n", 1, "must return a table" },
        { "a table entry that is not an expression", "return {\n  services = { a = ) },\n}\n", 2, "unexpected symbol" },
        -- LuaJIT loads bytecode given as source: a config is text only
        { "a bytecode file", "\27LJ\2\0", 1, "Lua source, not bytecode" },
    }
    for _, m in ipairs(mistakes) do
        it("rejects " .. m[1] .. " with FILE:LINE: reason", function()
            local path = config_file(m[2])
            local rc, out = run("check -c " .. path)
            assert.are_not.equal(0, rc)
            local file, line = out:match("^(%S+):(%d+): ")
            assert.equal(path, file, out)
            assert.equal(m[3], tonumber(line), out)
            assert.truthy(out:find(m[4]), out)
        end)
    end

    it("serves the embedded default (503 with instructions) without a config", function()
        if h.port_open(8080) then
            pending("port 8080 is busy on this machine")
            return
        end
        local dir = h.tmpdir()
        local bin = h.bin:sub(1, 1) == "/" and h.bin or (require("posix.unistd").getcwd() .. "/" .. h.bin)
        local p = h.spawn({ bin }, { cwd = dir, stderr = dir .. "/err" })
        h.wait_until(function() return h.port_open(8080) end, 5, "the default listener")
        local r = h.request(8080, {})
        assert.equal(503, r.status)
        assert.truthy(r.body:find("No services are configured", 1, true))
        assert.truthy(r.body:find("services = {", 1, true))
        assert.equal(0, h.kill(p))
    end)

    it("finishes in-flight requests on SIGTERM, refuses new ones, exits 0", function()
        local b = h.start_backend()
        local gw = h.start_gateway({ config = {
            services = { api = { targets = { b.address } } },
            routes = { { rule = "PathPrefix(`/`)", service = "api" } },
        } })
        local c = h.connect(gw.port)
        c:send_request({ path = "/delay/1000" })
        socket.sleep(0.2)
        require("posix.signal").kill(gw:pid(), require("posix.signal").SIGTERM)
        h.wait_until(function() return not h.port_open(gw.port) end, 2, "the listener to close")
        local r = c:read_response()
        assert.equal(200, r.status)
        assert.equal("delayed\n", r.body)
        assert.equal(0, h.reap(gw.proc, 5))
    end)

    describe("on a port another process listens on", function()
        -- Starts a second gateway on port; returns its process and error log path.
        local function second(port, extra)
            local path = config_file(string.format([[
return {
  listen = "127.0.0.1:%d", admin = false,
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api" } },
}]], port))
            local err = path .. ".err"
            local argv = { h.bin, "-c", path }
            if extra then argv[#argv + 1] = extra end
            return h.spawn(argv, { stderr = err }), err
        end

        local function gateway()
            return h.start_gateway({ config = {
                services = { api = { targets = { "127.0.0.1:9" } } },
                routes = { { rule = "PathPrefix(`/`)", service = "api" } },
            } })
        end

        it("refuses to start when another gateway holds it", function()
            local gw = gateway()
            local p, err = second(gw.port)
            assert.equal(1, h.reap(p, 10))
            assert.truthy(h.read_file(err):find("address already in use", 1, true), h.read_file(err))
        end)

        it("refuses to start when any other program holds it", function()
            local b = h.start_backend()
            local p, err = second(b.port)
            assert.equal(1, h.reap(p, 10))
            assert.truthy(h.read_file(err):find("address already in use", 1, true), h.read_file(err))
        end)

        it("shares it with --takeover, for a zero-downtime upgrade", function()
            local gw = gateway()
            local p, err = second(gw.port, "--takeover")
            h.wait_until(function() return h.read_file(err):find("listening on", 1, true) end, 10,
                "the second gateway to listen")
            assert.equal(0, h.kill(p))
        end)
    end)
end)
