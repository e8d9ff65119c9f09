-- Options travel between Lua states as literals; the providers' settings
-- are compared as text to tell whether discovery must restart.
local plugins = require("moongate.plugins")

describe("plugins.serialize", function()
    it("gives the same text for the same data, whatever order it was built in", function()
        local a = { interval = 0.05, hosts_file = "/h", services = { api = { host = "x", port = 1 }, web = { port = 2 } } }
        local b = {}
        b.services = {}
        b.services.web = { port = 2 }
        b.services.api = { port = 1, host = "x" }
        b.hosts_file = "/h"
        b.interval = 0.05
        -- many keys, so that hash order and insertion order differ
        for i = 1, 50 do a["k" .. i] = i end
        for i = 50, 1, -1 do b["k" .. i] = i end
        assert.equal(plugins.serialize(a), plugins.serialize(b))
    end)

    it("round-trips through deserialize", function()
        local v = { 1, 2, x = { y = "z", [3] = true } }
        assert.same(v, plugins.deserialize(plugins.serialize(v)))
    end)
end)
