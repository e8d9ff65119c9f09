-- OCSP stapling on the control plane. For every served certificate whose
-- leaf names an OCSP responder, ask the responder (RFC 6960 over HTTP
-- POST), hand the answer to the core, which checks it (signature, this
-- certificate, valid now, status good) before it staples it to
-- handshakes that ask for a status. Asked again halfway to the answer's
-- nextUpdate (between 60 s and 12 h); a failure is logged and retried
-- after 10 s, doubling up to an hour, while handshakes go on without a
-- staple (or with the last good one while it is valid).
local mg = require("moongate")
local internal = require("moongate.internal")

local _M = {}

local state = {} -- fingerprint -> { due = os.time(), backoff = seconds, err = last error }
local generation = 0

local function next_ask(next_update, now)
    if next_update == 0 then return now + 3600 end -- no nextUpdate: once an hour
    return now + math.max(60, math.min((next_update - now) / 2, 12 * 3600))
end

-- Asks the responder for c's status and staples it; next update or nil, err.
local function ask(t, c)
    local der, url = t.ocsp_request(c.fingerprint)
    if not der then return nil, url end
    local res, err = mg.http.request({
        method = "POST", url = url, body = der, timeout = 10,
        headers = { ["Content-Type"] = "application/ocsp-request", Accept = "application/ocsp-response" },
    })
    if not res then return nil, "responder " .. url .. ": " .. tostring(err) end
    if res.status ~= 200 then return nil, "responder " .. url .. " answered " .. res.status end
    return t.ocsp_staple(c.fingerprint, res.body)
end

local function name_of(c)
    return (c.names and c.names[1] or "?") .. " (" .. tostring(c.origin) .. ")"
end

-- One pass over the served certificates: ask for those that are due.
function _M.pass(t, now)
    local seen = {}
    for _, c in ipairs(t.certificates() or {}) do
        if c.ocsp_url then
            seen[c.fingerprint] = true
            local st = state[c.fingerprint]
            if not st then
                st = { due = 0, backoff = 0 }
                state[c.fingerprint] = st
            end
            if now >= st.due then
                local next_update, err = ask(t, c)
                if next_update then
                    st.backoff, st.err = 0, nil
                    st.due = next_ask(next_update, now)
                    mg.log.info("ocsp: stapled the status of ", name_of(c), next_update > 0
                        and (", valid until " .. os.date("!%Y-%m-%dT%H:%M:%SZ", next_update)) or "")
                else
                    st.backoff = math.min(st.backoff == 0 and 10 or st.backoff * 2, 3600)
                    st.due = now + st.backoff
                    st.err = err
                    mg.log.warn("ocsp: ", name_of(c), ": ", err, "; asking again in ", st.backoff, " s")
                end
            end
        end
    end
    for fp in pairs(state) do
        if not seen[fp] then state[fp] = nil end -- no longer served
    end
end

-- Starts (or, with on = false, stops) the stapling loop: a pass a second.
function _M.run(t, on)
    generation = generation + 1
    if not on then return end
    local gen = generation
    mg.spawn(function()
        internal.plugin = "ocsp"
        while gen == generation do
            local ok, err = pcall(_M.pass, t, os.time())
            if not ok then mg.log.err("ocsp: ", tostring(err)) end
            mg.sleep(1)
        end
    end)
end

return _M
