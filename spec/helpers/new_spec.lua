-- `moongate new`: the skeletons it writes pass `moongate test` in a folder
-- that holds nothing but them (no checkout, no LUA_PATH), and a broken
-- plugin makes those specs fail.
local h = require("moongate.test")
local stat = require("posix.sys.stat")

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs the binary with args in cwd, in an environment stripped of every
-- hint of where a checkout is; returns exit status, output.
local function moongate(cwd, args)
    local cmd = "cd " .. sh_quote(cwd) .. " && env -u LUA_PATH -u LUA_CPATH -u MOONGATE_BIN "
        .. sh_quote(h.bin) .. " " .. args .. " 2>&1; echo \"rc=$?\""
    local f = io.popen(cmd)
    local out = f:read("*a")
    f:close()
    local rc = tonumber(out:match("rc=(%d+)%s*$"))
    return rc, out
end

local function copy(from, to)
    h.write_file(to, h.read_file(from))
end

-- Generates KIND NAME in one folder, copies the two files into a fresh one.
local function generate(kind, name)
    local gen = h.tmpdir()
    local rc, out = moongate(gen, "new " .. kind .. " " .. name)
    assert.equal(0, rc, out)
    local dir = h.tmpdir()
    stat.mkdir(dir .. "/plugins")
    stat.mkdir(dir .. "/spec")
    copy(gen .. "/plugins/" .. name .. ".lua", dir .. "/plugins/" .. name .. ".lua")
    copy(gen .. "/spec/" .. name .. "_spec.lua", dir .. "/spec/" .. name .. "_spec.lua")
    return dir
end

local function summary(out)
    local s, f, e = out:match("(%d+) success%a* / (%d+) failures? / (%d+) errors?")
    return tonumber(s), tonumber(f), tonumber(e)
end

describe("moongate new", function()
    after_each(h.cleanup)

    for _, kind in ipairs({ "balancer", "middleware", "discovery" }) do
        it("writes a " .. kind .. " whose spec passes in an empty folder with only the binary", function()
            local dir = generate(kind, "my_" .. kind)
            local rc, out = moongate(dir, "test")
            assert.equal(0, rc, out)
            local ok, failed, errors = summary(out)
            assert.is_true(ok and ok >= 1, out)
            assert.equal(0, failed + errors, out)
        end)
    end

    it("writes a balancer spec that fails when the balancer is broken", function()
        local dir = generate("balancer", "lopsided")
        local path = dir .. "/plugins/lopsided.lua"
        -- the first target whenever it is untried: ignores weights, starves the rest
        local src, n = h.read_file(path):gsub("best = best or mg%.smooth_pick%(targets, current, tried%)",
            "best = best or (not tried[targets[1]] and 1) or mg.smooth_pick(targets, current, tried)")
        assert.equal(1, n)
        h.write_file(path, src)
        local rc, out = moongate(dir, "test")
        assert.are_not.equal(0, rc)
        local _, failed = summary(out)
        assert.is_true(failed >= 3, out) -- weights, re-weighting, the added target, the gateway
        assert.truthy(out:find("spreads picks in proportion to weights", 1, true), out)
    end)

    it("writes a middleware spec that fails when the middleware does nothing", function()
        local dir = generate("middleware", "guard")
        local path = dir .. "/plugins/guard.lua"
        h.write_file(path, h.read_file(path):gsub("function _M.on_request%(conf, req%)\n",
            "function _M.on_request(conf, req)\n    do return end\n"))
        local rc, out = moongate(dir, "test")
        assert.are_not.equal(0, rc)
        local _, failed, errors = summary(out)
        assert.is_true(failed + errors >= 2, out)
    end)

    it("creates DIR and its folders when they do not exist", function()
        local base = h.tmpdir()
        local rc, out = moongate(base, "new middleware audit deep/er")
        assert.equal(0, rc, out)
        assert.truthy(stat.stat(base .. "/deep/er/plugins/audit.lua"))
        assert.truthy(stat.stat(base .. "/deep/er/spec/audit_spec.lua"))
        assert.truthy(out:find("cd deep/er && moongate test", 1, true), out)
    end)

    it("refuses to overwrite a plugin or a spec, and writes neither then", function()
        local dir = h.tmpdir()
        stat.mkdir(dir .. "/spec")
        h.write_file(dir .. "/spec/mine_spec.lua", "-- mine\n")
        local rc, out = moongate(dir, "new balancer mine")
        assert.equal(1, rc)
        assert.truthy(out:find("spec/mine_spec.lua exists; not overwriting it", 1, true), out)
        assert.equal("-- mine\n", h.read_file(dir .. "/spec/mine_spec.lua"))
        assert.is_nil(stat.stat(dir .. "/plugins/mine.lua"))
        assert.equal(0, (moongate(dir, "new discovery other")))
        rc, out = moongate(dir, "new balancer other")
        assert.equal(1, rc)
        assert.truthy(out:find("plugins/other.lua exists", 1, true), out)
        assert.truthy(h.read_file(dir .. "/plugins/other.lua"):find('type = "discovery"', 1, true))
    end)

    it("answers bad usage with the reason and the usage", function()
        local dir = h.tmpdir()
        local cases = {
            { "new", 2, "usage: moongate new KIND NAME" },
            { "new widget x", 2, "unknown kind 'widget'" },
            { "new balancer", 2, "missing NAME" },
            { "new balancer 9lives", 2, "bad NAME '9lives'" },
            { "new balancer ../escape", 2, "bad NAME '../escape'" },
            { "new balancer a b c", 2, "unexpected argument 'c'" },
        }
        for _, c in ipairs(cases) do
            local rc, out = moongate(dir, c[1])
            assert.equal(c[2], rc, c[1] .. ": " .. out)
            assert.truthy(out:find(c[3], 1, true), c[1] .. ": " .. out)
        end
        local rc, out = moongate(dir, "new --help")
        assert.equal(0, rc)
        assert.truthy(out:find("never overwrites", 1, true))
        local f = io.popen("ls -A " .. sh_quote(dir))
        assert.equal("", f:read("*a"), "bad usage wrote files")
        f:close()
    end)
end)
