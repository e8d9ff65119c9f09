-- basic_auth with htpasswd hashes through the real gateway. The hashes
-- were made with `openssl passwd -apr1`, libxcrypt's crypt (bcrypt) and
-- base64(sha1) for the password "s3cret".
local h = require("spec.helpers")
local htpasswd = require("moongate.htpasswd")

local HASHES = {
    apr1 = "$apr1$Xy7abcde$yyduqJdSeg/P2d5iLKGtl0",
    bcrypt = "$2y$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK",
    sha = "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=",
}

local function basic(user, pass) return "Basic " .. htpasswd.base64(user .. ":" .. pass) end

local function gateway(mw)
    local b = h.start_backend({ name = "api" })
    mw.plugin = "basic_auth"
    local gw = h.start_gateway({ config = {
        middlewares = { auth = mw },
        services = { api = { targets = { b.address } } },
        routes = { { rule = "PathPrefix(`/`)", service = "api", middlewares = { "auth" } } },
    } })
    return gw, b
end

describe("moongate.htpasswd", function()
    it("verifies each kind of hash and refuses a wrong password", function()
        for kind, hash in pairs(HASHES) do
            assert.equal(kind, htpasswd.kind(hash))
            assert.is_true(htpasswd.verify("s3cret", hash), kind)
            assert.is_false(htpasswd.verify("s3cret!", hash), kind)
        end
        assert.equal(HASHES.apr1, htpasswd.apr1("s3cret", "Xy7abcde"))
    end)

    it("parses htpasswd files and names a bad line", function()
        local users = assert(htpasswd.parse("# team\nalice:" .. HASHES.apr1 .. "\n\nbob:x\r\n"))
        assert.equal(HASHES.apr1, users.alice)
        assert.equal("x", users.bob)
        local _, err = htpasswd.parse("alice:x\nnonsense\n")
        assert.equal("line 2: expected user:hash", err)
    end)
end)

describe("basic_auth", function()
    after_each(h.cleanup)

    it("accepts bcrypt, apr1 and SHA users given as user:hash", function()
        local gw = gateway({ users = { "bc:" .. HASHES.bcrypt, "ap:" .. HASHES.apr1, "sh:" .. HASHES.sha } })
        for _, user in ipairs({ "bc", "ap", "sh" }) do
            local ok = h.request(gw.port, { headers = { Authorization = basic(user, "s3cret") } })
            assert.equal(200, ok.status, user)
            assert.equal(user, h.json(ok).headers["x-authenticated-user"])
            assert.equal(401, h.request(gw.port, { headers = { Authorization = basic(user, "nope") } }).status)
        end
        -- a remembered good password still passes, a wrong one still fails
        assert.equal(200, h.request(gw.port, { headers = { Authorization = basic("bc", "s3cret") } }).status)
        assert.equal(401, h.request(gw.port, { headers = { Authorization = basic("bc", "s3cret ") } }).status)
    end)

    it("reads users from an htpasswd file and names the user in header_field", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/htpasswd", "carol:" .. HASHES.bcrypt .. "\ndave:" .. HASHES.sha .. "\n")
        local gw, b = gateway({ users_file = dir .. "/htpasswd", header_field = "X-User", realm = "team" })
        local denied = h.request(gw.port, {})
        assert.equal(401, denied.status)
        assert.equal('Basic realm="team"', denied.headers["www-authenticate"])
        local ok = h.request(gw.port, { headers = { Authorization = basic("dave", "s3cret") } })
        assert.equal(200, ok.status)
        assert.equal("dave", h.json(ok).headers["x-user"])
        assert.is_nil(h.json(ok).headers["authorization"])
        assert.equal(2, h.json(h.request(b.port, { path = "/stats" })).requests)
    end)

    it("reports a missing users file when the config loads", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/moongate.lua", [[
return {
  services = { api = { targets = { "127.0.0.1:9" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "api",
      middlewares = { { plugin = "basic_auth", users_file = "/nonexistent/htpasswd" } } } },
}]])
        local f = io.popen(h.bin .. " check -c " .. dir .. "/moongate.lua 2>&1")
        local out = f:read("*a")
        f:close()
        assert.truthy(out:find("users_file: /nonexistent/htpasswd: No such file", 1, true), out)
    end)
end)
