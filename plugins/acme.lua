-- ACME client (RFC 8555): obtains and renews certificates for the hosts of
-- the routes that name this resolver (tls = { resolver = "le" }), with the
-- HTTP-01 or TLS-ALPN-01 challenge (RFC 8737), and serves them through
-- the gateway's certificate store. A certificate source plugin on the
-- control plane (see lua/moongate/tls.lua); docs/tls.md.
--
-- Storage (opts.storage, JSON, mode 0600): the account key and URL, and
-- per certificate its names, PEM chain, private key and expiry. At start
-- what is stored is served at once; the CA is asked only for what is
-- missing or due (opts.renew_before days before expiry, 30 by default).
-- Failures back off exponentially (1 min doubling to 1 day), and a CA's
-- Retry-After (rate limits, polling) is respected. Meanwhile requests are
-- served with the old certificate, or the default one.
local mg = require("moongate")
local crypto = mg.crypto

local _M = { type = "certificates" }

local POLL_LIMIT = 120 -- seconds to wait for a challenge or an order
local BACKOFF_MIN, BACKOFF_MAX = 60, 86400

-- ---- pure helpers (unit-tested in spec/plugins/acme_spec.lua) -------------

-- Seconds to wait after `failures` consecutive failures; retry_after (from
-- the CA) wins when longer.
function _M.backoff(failures, retry_after)
    local d = math.min(BACKOFF_MIN * 2 ^ math.max(failures - 1, 0), BACKOFF_MAX)
    if retry_after and retry_after > d then d = retry_after end
    return d
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                 Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- A Retry-After header (delta seconds or an HTTP date) as seconds from now.
function _M.retry_after(value, now)
    if not value then return nil end
    local n = tonumber(value)
    if n then return math.max(n, 0) end
    local d, mon, y, hh, mm, ss = value:match("%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT")
    if not d or not MONTHS[mon] then return nil end
    -- os.time takes local time; compute the UTC offset once
    local t = os.time({ year = tonumber(y), month = MONTHS[mon], day = tonumber(d),
                        hour = tonumber(hh), min = tonumber(mm), sec = tonumber(ss) })
    local utc = os.time(os.date("!*t", t))
    return math.max(t + (t - utc) - (now or os.time()), 0)
end

-- The names of a domain entry, main first, without duplicates.
function _M.names(d)
    local out, seen = { d.main }, { [d.main] = true }
    for _, s in ipairs(d.sans or {}) do
        if not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
    return out
end

-- Whether a stored certificate must be (re)obtained for these names.
function _M.due(stored, names, now, renew_before_days)
    if not stored or not stored.cert or not stored.not_after then return true end
    local have = {}
    for _, n in ipairs(stored.names or {}) do have[n] = true end
    for _, n in ipairs(names) do if not have[n] then return true end end
    return stored.not_after - now < renew_before_days * 86400
end

-- ---- storage ----------------------------------------------------------------

local function read_storage(path)
    local f = io.open(path, "rb")
    if not f then return { certificates = {} } end
    local data = f:read("*a")
    f:close()
    local st, err = mg.json.decode(data)
    if type(st) ~= "table" then
        mg.log.err("ACME storage ", path, " is not valid JSON (", tostring(err), "); starting afresh")
        return { certificates = {} }
    end
    st.certificates = type(st.certificates) == "table" and st.certificates or {}
    return st
end

local function write_storage(path, st)
    local ok, err = crypto.write_secret(path, mg.json.encode(st))
    if not ok then mg.log.err("cannot write ACME storage: ", err) end
    return ok
end

-- ---- the protocol -------------------------------------------------------------

local Client = {}
Client.__index = Client

local function acme_error(res, what)
    local body = res.body and mg.json.decode(res.body)
    local detail = type(body) == "table" and (tostring(body.type or "") .. ": " .. tostring(body.detail or "")) or
        (res.body or "")
    return string.format("%s: HTTP %d %s", what, res.status, detail),
        type(body) == "table" and body.type or nil
end

function Client:http(opts)
    opts.ca_file = self.o.ca_file
    opts.timeout = self.o.timeout
    local res, err = mg.http.request(opts)
    if not res then return nil, opts.url .. ": " .. tostring(err) end
    if res.headers["replay-nonce"] then self.nonce = res.headers["replay-nonce"] end
    return res
end

function Client:get_nonce()
    if self.nonce then
        local n = self.nonce
        self.nonce = nil
        return n
    end
    local res, err = self:http({ url = self.dir.newNonce })
    if not res then return nil, err end
    local n = res.headers["replay-nonce"]
    self.nonce = nil
    if not n then return nil, "newNonce: no Replay-Nonce header" end
    return n
end

-- POST a JWS to url; payload "" is POST-as-GET. Retries on badNonce.
function Client:post(url, payload, use_jwk)
    for _ = 1, 5 do
        local nonce, err = self:get_nonce()
        if not nonce then return nil, err end
        local protected = { nonce = nonce, url = url }
        if use_jwk then protected.jwk = self.jwk else protected.kid = self.kid end
        local jws
        jws, err = crypto.jws(self.account_key, protected, payload)
        if not jws then return nil, err end
        local res
        res, err = self:http({ method = "POST", url = url, body = mg.json.encode(jws),
                               headers = { ["Content-Type"] = "application/jose+json" } })
        if not res then return nil, err end
        if res.status < 400 then return res end
        local msg, typ = acme_error(res, url)
        if typ ~= "urn:ietf:params:acme:error:badNonce" then
            return nil, msg, _M.retry_after(res.headers["retry-after"]), typ
        end
        -- the answer carried a fresh nonce (self.nonce): try again
    end
    return nil, url .. ": the CA kept rejecting nonces"
end

local function decode(res)
    local v = mg.json.decode(res.body or "")
    return type(v) == "table" and v or {}
end

function Client:setup(st)
    local res, err = self:http({ url = self.o.directory })
    if not res then return nil, err end
    if res.status ~= 200 then return nil, (acme_error(res, "directory")) end
    self.dir = decode(res)
    if not self.dir.newNonce or not self.dir.newAccount or not self.dir.newOrder then
        return nil, "directory " .. self.o.directory .. " is not an ACME directory"
    end
    local acct = st.account
    if not acct or acct.directory ~= self.o.directory or not acct.key then
        local key
        key, err = crypto.key("ec")
        if not key then return nil, err end
        acct = { directory = self.o.directory, key = key }
        st.account = acct
    end
    self.account_key = acct.key
    self.jwk, err = crypto.jwk(acct.key)
    if not self.jwk then return nil, err end
    self.thumb = crypto.thumbprint(self.jwk)
    if acct.url then
        self.kid = acct.url
        return true
    end
    local payload = { termsOfServiceAgreed = true }
    if self.o.email then payload.contact = { "mailto:" .. self.o.email } end
    local retry
    res, err, retry = self:post(self.dir.newAccount, payload, true)
    if not res then return nil, err, retry end
    self.kid = res.headers.location
    if not self.kid then return nil, "newAccount: no Location header" end
    acct.url = self.kid
    write_storage(self.o.storage, st)
    mg.log.info("ACME account registered at ", self.o.directory)
    return true
end

-- Polls url (POST-as-GET) until the object's status leaves `pending`/`processing`.
function Client:poll(url)
    local deadline = mg.now() + POLL_LIMIT
    while true do
        local res, err, retry = self:post(url, "")
        if not res then return nil, err, retry end
        local obj = decode(res)
        if obj.status ~= "pending" and obj.status ~= "processing" then
            return obj, nil, nil, res
        end
        if mg.now() > deadline then return nil, url .. ": still " .. tostring(obj.status) .. " after " .. POLL_LIMIT .. " s" end
        local ra = _M.retry_after(res.headers["retry-after"])
        mg.sleep(math.min(math.max(ra or 1, 0.5), 10))
    end
end

function Client:authorize(authz_url, ctx)
    local res, err, retry = self:post(authz_url, "")
    if not res then return nil, err, retry end
    local authz = decode(res)
    if authz.status == "valid" then return true end
    local name = authz.identifier and authz.identifier.value
    local want = self.o.challenge
    local chal
    for _, c in ipairs(authz.challenges or {}) do
        if c.type == want then chal = c end
    end
    if not chal then return nil, string.format("%s: the CA offers no %s challenge", tostring(name), want) end
    local keyauth = chal.token .. "." .. self.thumb
    if want == "http-01" then
        ctx.set_http01(chal.token, keyauth)
    else
        local cert, key = crypto.alpn_challenge_cert(name, keyauth)
        if not cert then return nil, key end
        local ok, serr = ctx.set_alpn01(name, cert, key)
        if not ok then return nil, serr end
    end
    local function cleanup()
        if want == "http-01" then ctx.set_http01(chal.token, nil) else ctx.set_alpn01(name, nil) end
    end
    res, err, retry = self:post(chal.url, "{}")
    if not res then cleanup(); return nil, err, retry end
    local final
    final, err, retry = self:poll(authz_url)
    cleanup()
    if not final then return nil, err, retry end
    if final.status ~= "valid" then
        local why = ""
        for _, c in ipairs(final.challenges or {}) do
            if c.type == want and type(c.error) == "table" then why = ": " .. tostring(c.error.detail) end
        end
        return nil, string.format("%s: authorization %s%s", tostring(name), tostring(final.status), why)
    end
    return true
end

-- Obtains one certificate for names. Returns { cert, key, ... } or nil, err, retry_after.
function Client:obtain(names, ctx)
    local ids = {}
    for i, n in ipairs(names) do ids[i] = { type = "dns", value = n } end
    local res, err, retry = self:post(self.dir.newOrder, { identifiers = ids })
    if not res then return nil, err, retry end
    local order_url = res.headers.location
    local order = decode(res)
    for _, a in ipairs(order.authorizations or {}) do
        local ok
        ok, err, retry = self:authorize(a, ctx)
        if not ok then return nil, err, retry end
    end
    if order_url and order.status ~= "ready" and order.status ~= "valid" then
        order, err, retry = self:poll(order_url)
        if not order then return nil, err, retry end
    end
    if order.status == "valid" then
        -- finalized before (an order the CA reused): its key is not ours
        return nil, "the CA returned an order finalized earlier; a new one follows after the back-off"
    end
    if order.status ~= "ready" then return nil, "order is " .. tostring(order.status) end
    local key
    key, err = crypto.key(self.o.key_type or "ec", 2048)
    if not key then return nil, err end
    do
        local csr
        csr, err = crypto.csr(key, names)
        if not csr then return nil, err end
        res, err, retry = self:post(order.finalize, { csr = crypto.b64url(csr) })
        if not res then return nil, err, retry end
        order = decode(res)
        if order.status ~= "valid" and order_url then
            order, err, retry = self:poll(order_url)
            if not order then return nil, err, retry end
        end
    end
    if order.status ~= "valid" or not order.certificate then
        return nil, "order ended " .. tostring(order.status) .. " without a certificate"
    end
    res, err, retry = self:post(order.certificate, "")
    if not res then return nil, err, retry end
    local chain = res.body or ""
    local info
    info, err = crypto.cert_info(chain)
    if not info then return nil, "the CA's certificate does not parse: " .. tostring(err) end
    return { cert = chain, key = key, names = names, not_after = info.not_after, serial = info.serial }
end

-- ---- the source -----------------------------------------------------------------

local function entry_id(d)
    return d.main
end

function _M.start(ctx)
    local o = ctx.opts
    local st = read_storage(o.storage)
    local renew_before = o.renew_before or 30
    local now = os.time()
    -- restart and reuse: whatever is stored and still valid is served at once
    for _, d in ipairs(ctx.domains) do
        local c = st.certificates[entry_id(d)]
        if c and c.cert and c.key and (c.not_after or 0) > now then
            ctx.set_certificate(entry_id(d), c.cert, c.key)
        end
    end
    if #ctx.domains == 0 then
        mg.log.info("resolver ", ctx.name, ": no route names it; nothing to obtain")
    end
    local client = setmetatable({ o = o }, Client)
    local ready = false
    local failures, next_try = {}, {}
    while ctx.alive() do
        now = os.time()
        local sleep_for = o.check_interval or 43200
        for _, d in ipairs(ctx.domains) do
            if not ctx.alive() then return end
            local id = entry_id(d)
            local names = _M.names(d)
            local stored = st.certificates[id]
            if _M.due(stored, names, now, renew_before) and (next_try[id] or 0) <= now then
                local ok, err, retry = true, nil, nil
                if not ready then
                    ok, err, retry = client:setup(st)
                    ready = ok and true or false
                end
                local got
                if ok then got, err, retry = client:obtain(names, ctx) end
                if not ctx.alive() then return end
                if got then
                    failures[id], next_try[id] = nil, nil
                    st.certificates[id] = got
                    write_storage(o.storage, st)
                    ctx.set_certificate(id, got.cert, got.key)
                    mg.log.info("obtained a certificate for ", table.concat(names, ", "), " (serial ", got.serial,
                        ", until ", os.date("!%Y-%m-%d", got.not_after), ")")
                else
                    failures[id] = (failures[id] or 0) + 1
                    local wait = _M.backoff(failures[id], retry)
                    next_try[id] = now + wait
                    if err and err:find("account", 1, true) then ready = false end
                    mg.log.err("resolver ", ctx.name, ": ", table.concat(names, ", "), ": ", tostring(err),
                        "; retrying in ", math.floor(wait), " s",
                        stored and stored.cert and " (the current certificate keeps serving)" or "")
                end
            end
            if next_try[id] then sleep_for = math.min(sleep_for, math.max(next_try[id] - os.time(), 1)) end
        end
        mg.sleep(sleep_for)
    end
end

return _M
