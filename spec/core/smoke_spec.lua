-- `moongate test` runs specs inside the moongate binary itself, not in a
-- stand-alone interpreter: each of these fails under plain busted/luajit.
local unistd = require("posix.unistd")
local stdlib = require("posix.stdlib")
local h = require("moongate.test")

describe("moongate test", function()
    it("runs specs in the binary under test", function()
        local exe = unistd.readlink("/proc/self/exe")
        assert.equal(stdlib.realpath(h.bin), exe)
        assert.truthy(exe:find("moongate", 1, true), exe)
    end)

    it("gives specs the binary's own FFI functions", function()
        require("moongate") -- declares them (through moongate.ffi)
        local ffi = require("ffi")
        local t1 = ffi.C.mg_ffi_now()
        assert.equal("number", type(t1))
        assert.is_true(t1 > 0)
        assert.is_true(require("moongate").in_gateway)
    end)

    it("gives specs the Lua library embedded in the binary", function()
        local embedded = package.loaded["moongate.c.embedded"]
        assert.is_function(embedded)
        -- Lua files are embedded as bytecode that still names its file (tools/embed.lua)
        local fn = assert(loadstring(embedded("lua/moongate/init.lua")))
        assert.equal("@lua/moongate/init.lua", debug.getinfo(fn, "S").source)
        assert.truthy(embedded("lua/moongate/test/backend.py"))
    end)

    it("hands the core's C functions to the library, not to _G", function()
        for name in pairs(_G) do
            assert.falsy(tostring(name):find("^__m"), "global " .. tostring(name))
        end
        for _, m in ipairs({ "moongate.c.embedded", "moongate.c.json", "moongate.c.io" }) do
            assert.truthy(package.loaded[m], m)
        end
        assert.is_function(require("moongate").json.encode)
        assert.is_function(require("moongate").http.request)
    end)
end)
