-- Runs fn as a control-plane coroutine (mg.spawn: mg.http needs one) and
-- turns the event loop until fn returned, for at most 10 s (times h.slow);
-- returns what fn returned. Usage: local async = require("spec.support.async")
local h = require("spec.helpers")
local mg = require("moongate")
local socket = require("socket")

return function(fn)
    local done, result = false, nil
    mg.spawn(function()
        result = { fn() }
        done = true
    end)
    local deadline = socket.gettime() + 10 * h.slow
    while not done and socket.gettime() < deadline do mg.run(0.05) end
    assert(done, "the coroutine did not finish")
    return unpack(result)
end
