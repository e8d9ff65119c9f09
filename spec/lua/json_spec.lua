-- mg.json (core/lua_json.c): member and edit work on the JSON text, so
-- what Lua tables cannot hold ([] against {}, null members, member order)
-- survives an edit.
local mg = require("moongate")

describe("mg.json", function()
    it("decodes null as mg.json.null in arrays and as absent in objects", function()
        local v = mg.json.decode('{"a":[1,null,{"b":null}],"s":"x\\u00e9"}')
        assert.same({ 1, mg.json.null }, { v.a[1], v.a[2] })
        assert.is_nil(v.a[3].b)
        assert.equal("x\195\169", v.s)
        assert.same(v.a[1], mg.json.decode(mg.json.encode({ 1 }))[1])
        local none, err = mg.json.decode("{")
        assert.is_nil(none)
        assert.matches("line 1 column", err)
    end)

    it("returns one member as JSON text, keeping [] {} and null", function()
        local text = '{"x":1,"Spec":{"b":[],"a":{},"n":null,"Mode":{"Replicated":{"Replicas":3}}}}'
        assert.equal('{"b":[],"a":{},"n":null,"Mode":{"Replicated":{"Replicas":3}}}',
            mg.json.member(text, { "Spec" }))
        assert.equal("3", mg.json.member(text, { "Spec", "Mode", "Replicated", "Replicas" }))
        local none, err = mg.json.member(text, { "Spec", "nope" })
        assert.is_nil(none)
        assert.equal("no such member", err)
    end)

    it("sets one member and leaves the rest as it was, in its order", function()
        local text = '{"z":[],"Mode":{"Replicated":{"Replicas":1}},"a":{"n":null}}'
        assert.equal('{"z":[],"Mode":{"Replicated":{"Replicas":4}},"a":{"n":null}}',
            mg.json.edit(text, { "Mode", "Replicated", "Replicas" }, 4))
        -- a missing last key is added; a missing object on the way is an error
        assert.equal('{"Mode":{"Replicated":{"Replicas":0}}}',
            mg.json.edit('{"Mode":{"Replicated":{}}}', { "Mode", "Replicated", "Replicas" }, 0))
        assert.equal('{"a":{"b":"s","t":[1,2]}}', mg.json.edit('{"a":{"b":"s"}}', { "a", "t" }, { 1, 2 }))
        local none, err = mg.json.edit('{"Mode":{}}', { "Mode", "Replicated", "Replicas" }, 2)
        assert.is_nil(none)
        assert.equal("no such member", err)
        none, err = mg.json.edit('{"a":[1]}', { "a", "b" }, 2)
        assert.is_nil(none)
        assert.matches("object's member", err)
        none, err = mg.json.edit("[", { "a" }, 1)
        assert.is_nil(none)
        assert.matches("line 1", err)
    end)
end)
