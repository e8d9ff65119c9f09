-- One FFI surface: core/ffi.h declares every function the binary exports,
-- lua/moongate/ffi.lua holds the one cdef that mirrors it, and the binary's
-- dynamic symbol table has exactly those functions. A request function
-- called outside a request raises an error that names it.
local h = require("moongate.test")
local core = require("moongate.ffi")

local function sorted_keys(set)
    local out = {}
    for k in pairs(set) do out[#out + 1] = k end
    table.sort(out)
    return out
end

local function header_names()
    local set = {}
    for name in h.read_file("core/ffi.h"):gmatch("MG_EXPORT[^;(]-[%s%*](mg_[%w_]+)%s*%(") do
        set[name] = true
    end
    return set
end

local function cdef_names()
    local set = {}
    for name in core.declarations:gmatch("[%s%*](mg_[%w_]+)%s*%(") do set[name] = true end
    return set
end

local function exported_names()
    local p = assert(io.popen("nm -D --defined-only '" .. h.bin .. "' 2>&1"))
    local out = p:read("*a")
    p:close()
    local set = {}
    for name in out:gmatch("%x+ [TtWw] (mg_[%w_]+)") do set[name] = true end
    return set, out
end

local function lines_of(cmd)
    local p = assert(io.popen(cmd))
    local out = {}
    for line in p:lines() do out[#out + 1] = line end
    p:close()
    return out
end

describe("the FFI surface", function()
    it("lists the same functions in core/ffi.h, the cdef and the binary's exports", function()
        local from_header, from_cdef = sorted_keys(header_names()), sorted_keys(cdef_names())
        local set, nm_out = exported_names()
        local from_binary = sorted_keys(set)
        assert.is_true(#from_header > 20, "ffi.h parsed: " .. #from_header .. " functions")
        assert.same(from_header, from_cdef)
        assert.same(from_header, from_binary, nm_out:sub(1, 200))
    end)

    it("names every exported function mg_ffi_", function()
        for _, name in ipairs(sorted_keys(header_names())) do
            assert.truthy(name:find("^mg_ffi_"), name)
        end
    end)

    it("marks exports in core/ffi.h only", function()
        local hits = lines_of("grep -l 'MG_EXPORT' core/*.c core/*.h")
        assert.same({ "core/ffi.h" }, hits)
    end)

    it("has one cdef of core functions, in lua/moongate/ffi.lua", function()
        local offenders = {}
        for _, path in ipairs(lines_of("find lua plugins spec -name '*.lua'")) do
            if path ~= "lua/moongate/ffi.lua" then
                local src = h.read_file(path)
                local pos = 1
                while true do
                    local s, e = src:find("ffi%.cdef%s*[%(%[\"']", pos)
                    if not s then break end
                    local decl = src:sub(e, e + 2000)
                    if decl:find("mg_[%w_]+%s*%(") then offenders[#offenders + 1] = path end
                    pos = e + 1
                end
            end
        end
        assert.same({}, offenders)
    end)

    it("gives the return codes their names from core/ffi.h", function()
        local src = h.read_file("core/ffi.h")
        for _, name in ipairs({ "OK", "DECLINED", "INVALID", "WRONG_PHASE", "NO_REQUEST", "NO_MEMORY" }) do
            local v = src:match("MG_FFI_" .. name .. " = (%-?%d+)")
            assert.equal(tonumber(v), core[name], name)
        end
    end)

    describe("outside a request", function()
        local request = require("moongate.request")
        local req, res = request.req, request.res

        it("returns MG_FFI_NO_REQUEST from the C side", function()
            assert.is_true(core.in_gateway)
            assert.equal(core.NO_REQUEST, core.C.mg_ffi_req_header_count())
            assert.equal(core.NO_REQUEST, core.C.mg_ffi_resp_status())
        end)

        -- (no tail calls below: the error must find the caller's frame)
        local v
        for _, case in ipairs({
            { "req.method", function() v = req.method end },
            { "req.path", function() v = req.path end },
            { "req:header", function() v = req:header("host") end },
            { "req:headers", function() v = req:headers() end },
            { "req:set_header", function() req:set_header("x-a", "1") end },
            { "req:set_path", function() req:set_path("/x") end },
            { "req:respond", function() req:respond(200, "x") end },
            { "res.status", function() v = res.status end },
            { "res:set_header", function() res:set_header("x-a", "1") end },
        }) do
            it("raises an error naming " .. case[1], function()
                local ok, err = pcall(case[2])
                assert.is_false(ok)
                assert.truthy(tostring(err):find(case[1] .. ": no current request", 1, true), tostring(err))
                -- the error points at the caller, not into request.lua
                assert.truthy(tostring(err):find("ffi_spec.lua", 1, true), tostring(err))
            end)
        end
    end)
end)
