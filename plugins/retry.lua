-- Traefik's retry: up to `attempts` tries of a request whose upstream
-- failed at the network level (a connect that timed out, a connection
-- lost before the response), with an exponential backoff.
--   { plugin = "retry", attempts = 4, initial_interval = 0.1 }
-- The core does the tries (req:set_retries): each goes to a target not yet
-- tried when there is one, waits initial_interval seconds before the first
-- retry and twice as long before each next one, and never resends a
-- request whose body already went upstream or whose response started.
-- A refused connect is free, as always: it moves on to the next target at
-- once without using an attempt. Status codes (a 500) are answers, not
-- network errors, and are never retried.
local _M = {
    type = "middleware",
    priority = 1010,
    schema = {
        attempts = { type = "integer", required = true, min = 1, max = 11 },
        initial_interval = { type = "number", default = 0.1, min = 0, max = 60 },
    },
}

function _M.on_request(conf, req)
    req:set_retries(conf.attempts - 1, conf.initial_interval)
end

return _M
