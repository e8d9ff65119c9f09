-- Draining before a stop: the autoscaler takes a replica out of what
-- discovery publishes (moongate.discovery.exclude), and puts its id back
-- once the container is gone.
local h = require("spec.helpers")
local mg = require("moongate")
local plugins = require("moongate.plugins")

describe("discovery.exclude", function()
    after_each(function()
        require("moongate.discovery").stop()
        h.cleanup()
    end)

    it("leaves a target out of what is published, and puts it back", function()
        local dir = h.tmpdir()
        h.write_file(dir .. "/two.lua", [[
            return { type = "discovery", start = function(ctx)
                ctx.set_targets("api", { { address = "127.0.0.1:1", id = "api_1" },
                                         { address = "127.0.0.1:2", id = "api_2" } })
            end }]])
        local discovery = require("moongate.discovery")
        local published = {}
        discovery.publish = function(lit) published[#published + 1] = plugins.deserialize(lit) end
        discovery.start(plugins.serialize({ two = {} }), dir)
        local function ids()
            local p = published[#published]
            local out = {}
            for _, t in ipairs(p and p.services.api and p.services.api.targets or {}) do out[#out + 1] = t.id end
            return table.concat(out, ",")
        end
        local function wait(want)
            local deadline = os.time() + 3
            while ids() ~= want and os.time() <= deadline do mg.run(0.05) end
            return ids()
        end
        assert.equal("api_1,api_2", wait("api_1,api_2"))
        discovery.exclude("api_2", true)
        assert.equal("api_1", wait("api_1"))
        discovery.exclude("api_2", nil)
        assert.equal("api_1,api_2", wait("api_1,api_2"))
    end)
end)
