-- The Docker Engine API client shared by plugins/docker.lua and
-- plugins/swarm.lua (require("moongate").docker): over the unix socket or
-- TCP, JSON answers, the /events stream, the gateway's own container, and
-- admission of new members once their port accepts a TCP connection.
-- Control plane only: every call waits in the caller's coroutine.
local mg = require("moongate")

local _M = {}

_M.DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"

function _M.urlencode(s)
    return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function base_url(endpoint)
    local sock = endpoint:match("^unix://(/.+)$")
    if sock then return "unix://" .. sock .. ":" end
    return (endpoint:gsub("^tcp://", "http://"):gsub("/$", ""))
end

-- An error from the socket that a fix can be named for.
function _M.explain(err, endpoint)
    err = tostring(err)
    local sock = endpoint:match("^unix://(/.+)$")
    if sock and (err:find("permission denied", 1, true) or err:find("EACCES", 1, true)) then
        return "the Docker socket " .. sock .. " is not readable by the gateway's user (" .. err
            .. "): give the container the socket's group, group_add: [\"${DOCKER_GID}\"] with"
            .. " DOCKER_GID=$(stat -c %g " .. sock .. ")", true
    end
    return err, false
end

local Client = {}
Client.__index = Client

-- Connects (asks /_ping for the API version). Returns a client, or nil,
-- err, unreadable (true when the socket exists but may not be read).
function _M.connect(endpoint)
    endpoint = endpoint or _M.DEFAULT_ENDPOINT
    local base = base_url(endpoint)
    local ping, perr = mg.http.request({ url = base .. "/_ping", timeout = 5 })
    if not ping then
        local why, unreadable = _M.explain(perr, endpoint)
        return nil, why, unreadable
    end
    if ping.status ~= 200 then return nil, "status " .. ping.status .. " for /_ping" end
    return setmetatable({ endpoint = endpoint, base = base,
                          prefix = "/v" .. (ping.headers["api-version"] or "1.41") }, Client)
end

-- GET path; decoded JSON, or nil, err, status.
function Client:get(path, timeout)
    local res, err = mg.http.request({ url = self.base .. self.prefix .. path, timeout = timeout or 5 })
    if not res then return nil, err end
    if res.status ~= 200 then
        local body = res.body and mg.json.decode(res.body)
        local msg = type(body) == "table" and body.message
        return nil, "status " .. res.status .. " for " .. path .. (msg and (": " .. msg) or ""), res.status
    end
    local v, jerr = mg.json.decode(res.body)
    if v == nil then return nil, "bad JSON from " .. path .. ": " .. tostring(jerr) end
    return v
end

-- The /events stream for filters (a table, JSON-encoded); iterate with
-- :lines(). Returns the stream, or nil, err.
function Client:events(filters)
    local q = filters and ("?filters=" .. _M.urlencode(mg.json.encode(filters))) or ""
    local stream, err = mg.http.stream({ url = self.base .. self.prefix .. "/events" .. q })
    if not stream then return nil, err end
    if stream.status ~= 200 then
        stream:close()
        return nil, "status " .. stream.status .. " for /events"
    end
    return stream
end

-- The gateway's own container when it runs in one (Docker sets HOSTNAME
-- to the short container id), else nil.
function Client:self_container()
    local me = os.getenv("HOSTNAME")
    if not me or me == "" then return nil end
    local c = self:get("/containers/" .. me .. "/json")
    if type(c) == "table" and c.Id and c.Id:sub(1, #me) == me then return c end
    return nil
end

-- "10.0.0.5:8080" -> "10.0.0.5", 8080 ("[fd00::5]:80" too)
local function split_address(address)
    local host, port = address:match("^%[(.+)%]:(%d+)$")
    if not host then host, port = address:match("^(.+):(%d+)$") end
    return host, tonumber(port)
end

-- Admission: a member is admitted once a TCP connect to its address
-- succeeds, not when its container starts (a process may take a while to
-- listen). new_admitter(on_change) returns an object with
--   :admitted(key, address) -> true when admitted; otherwise starts probing
--       (every 0.1 s, slowing to 1 s) and calls on_change() once it is;
--   :forget(key)            stops probing and forgets the member.
-- A member whose address changes is probed again. opts.probe == false
-- admits at once (for engines the gateway cannot reach by TCP).
function _M.new_admitter(on_change, opts)
    local a = { state = {} }
    local enabled = not (opts and opts.probe == false)
    function a:admitted(key, address)
        if not enabled then return true end
        local st = self.state[key]
        if st and st.address == address then return st.ok end
        st = { address = address, ok = false }
        self.state[key] = st
        local host, port = split_address(address)
        if not host then
            st.ok = true
            return true
        end
        mg.spawn(function()
            local delay, started, warned = 0.1, mg.now(), false
            while self.state[key] == st do
                local ok, err = mg.tcp_probe(host, port, 1)
                st.tried = true
                if self.state[key] ~= st then return end
                if ok then
                    st.ok = true
                    on_change(key)
                    return
                end
                if not warned and mg.now() - started > 30 then
                    warned = true
                    mg.log.warn(key, " at ", address, " still refuses connections after 30 s (",
                        tostring(err), "); it gets no traffic until it accepts one")
                end
                mg.sleep(delay)
                delay = math.min(delay * 1.5, 1)
            end
        end)
        return false
    end
    function a:forget(key) self.state[key] = nil end
    -- Waits (at most timeout seconds) until every member has had its first
    -- probe answered, so that a (re-)list publishes the ones that listen.
    function a:settle(timeout)
        local deadline = mg.now() + (timeout or 1.5)
        while mg.now() < deadline do
            local waiting = false
            for _, st in pairs(self.state) do
                if not st.tried then waiting = true; break end
            end
            if not waiting then return end
            mg.sleep(0.02)
        end
    end
    return a
end

-- Keeps a provider connected: runs session(connected) until ctx.alive()
-- is false. A session connects, lists, follows the event stream and
-- raises (or returns) when the stream ends; it calls connected() once its
-- listing succeeded. Every end is logged with its reason and followed by
-- a reconnect, and so a full re-list, after a backoff: 0.5 s, doubling up
-- to 10 s while sessions fail before connecting, 0.5 s again after one
-- that connected.
function _M.follow(ctx, name, session)
    local backoff = 0.5
    local function connected() backoff = 0.5 end
    while ctx.alive() do
        local ok, err = pcall(session, connected)
        if not ctx.alive() then return end
        mg.log.warn(name, ": ", ok and "the provider stopped" or tostring(err), "; reconnecting in ", backoff, " s")
        mg.sleep(backoff)
        backoff = ok and 0.5 or math.min(backoff * 2, 10)
    end
end

-- Calls on_event(event) for every event of stream while ctx.alive() (a
-- line that is not a JSON object is logged and skipped), then closes the
-- stream and returns why it ended, for the session to raise.
function _M.each_event(ctx, name, stream, on_event)
    for line in stream:lines() do
        if not ctx.alive() then break end
        local e = mg.json.decode(line)
        if type(e) == "table" then
            on_event(e)
        else
            mg.log.warn(name, ": ignoring a malformed event line")
        end
    end
    stream:close()
    return stream.err or "the event stream ended"
end

return _M
