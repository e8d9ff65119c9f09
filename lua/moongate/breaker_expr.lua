-- Traefik's circuit breaker expressions, compiled to a Lua function of a
-- metrics object:
--   NetworkErrorRatio() > 0.30
--   ResponseCodeRatio(500, 600, 0, 600) > 0.25 || LatencyAtQuantileMS(50.0) > 100
-- Operands: numbers and the three functions; comparisons > < >= <= == !=;
-- && binds tighter than ||; parentheses; ! negates.
--   local f = assert(expr.compile(s)); f(metrics) --> boolean
-- metrics: :network_error_ratio(), :response_code_ratio(a, b, c, d),
-- :latency_at_quantile_ms(q).
local _M = {}

local FUNCS = {
    networkerrorratio = { n = 0, call = function(m) return m:network_error_ratio() end },
    responsecoderatio = { n = 4, call = function(m, a) return m:response_code_ratio(a[1], a[2], a[3], a[4]) end },
    latencyatquantilems = { n = 1, call = function(m, a) return m:latency_at_quantile_ms(a[1]) end },
}

local function tokens(s)
    local list, i = {}, 1
    while i <= #s do
        local c = s:sub(i, i)
        if c:match("%s") then
            i = i + 1
        else
            local num = s:match("^%d+%.?%d*", i) or s:match("^%.%d+", i)
            local word = s:match("^[%a_][%w_]*", i)
            local op = s:match("^[<>=!]=", i) or s:match("^&&", i) or s:match("^||", i) or s:match("^[<>()!,]", i)
            if num then list[#list + 1] = { "num", tonumber(num) }; i = i + #num
            elseif word then list[#list + 1] = { "word", word }; i = i + #word
            elseif op then list[#list + 1] = { op }; i = i + #op
            else return nil, "unexpected '" .. c .. "' at column " .. i end
        end
    end
    return list
end

local CMP = {
    [">"] = function(a, b) return a > b end, ["<"] = function(a, b) return a < b end,
    [">="] = function(a, b) return a >= b end, ["<="] = function(a, b) return a <= b end,
    ["=="] = function(a, b) return a == b end, ["!="] = function(a, b) return a ~= b end,
}

function _M.compile(src)
    if type(src) ~= "string" or src == "" then return nil, "empty expression" end
    local toks, err = tokens(src)
    if not toks then return nil, err end
    local pos = 1
    local function peek() return toks[pos] and toks[pos][1] end
    local function want(t)
        if peek() ~= t then error("expected " .. t .. " near token " .. pos, 0) end
        pos = pos + 1
    end
    local parse_or
    local function operand()
        local t = toks[pos]
        if not t then error("unexpected end", 0) end
        if t[1] == "num" then
            pos = pos + 1
            local v = t[2]
            return function() return v end
        end
        if t[1] == "word" then
            local f = FUNCS[t[2]:lower()]
            if not f then error("unknown function " .. t[2], 0) end
            pos = pos + 1
            want("(")
            local args = {}
            while peek() ~= ")" do
                local a = toks[pos]
                if not a or a[1] ~= "num" then error(t[2] .. ": arguments must be numbers", 0) end
                args[#args + 1] = a[2]
                pos = pos + 1
                if peek() == "," then pos = pos + 1 end
            end
            want(")")
            if #args ~= f.n then error(t[2] .. " takes " .. f.n .. " arguments", 0) end
            return function(m) return f.call(m, args) end
        end
        error("unexpected token near " .. pos, 0)
    end
    local function primary()
        if peek() == "!" then
            pos = pos + 1
            local inner = primary()
            return function(m) return not inner(m) end
        end
        if peek() == "(" then
            pos = pos + 1
            local inner = parse_or()
            want(")")
            return inner
        end
        local left = operand()
        local op = peek()
        if not CMP[op] then error("expected a comparison after an operand", 0) end
        pos = pos + 1
        local right = operand()
        local cmp = CMP[op]
        return function(m) return cmp(left(m), right(m)) end
    end
    local function parse_and()
        local left = primary()
        while peek() == "&&" do
            pos = pos + 1
            local l, r = left, primary()
            left = function(m) return l(m) and r(m) end
        end
        return left
    end
    function parse_or()
        local left = parse_and()
        while peek() == "||" do
            pos = pos + 1
            local l, r = left, parse_and()
            left = function(m) return l(m) or r(m) end
        end
        return left
    end
    local ok, f = pcall(function()
        local f = parse_or()
        if pos <= #toks then error("unexpected token near " .. pos, 0) end
        return f
    end)
    if not ok then return nil, f end
    return f
end

return _M
