-- Maps key paths of a Lua config's table constructors to source lines.
-- Lua tables keep no line numbers, so config errors would otherwise say
-- only which key is wrong, not where. This tokenizes the source and walks
-- its table constructors: `key = v`, `["key"] = v` and positional entries
-- record the line where they start, under paths such as
-- "services.api.targets[2].weight".
local _M = {}

local sub, find, byte = string.sub, string.find, string.byte

-- Returns a list of tokens { t = kind, v = text, line = n }.
local function tokenize(src)
    local toks, i, line, n = {}, 1, 1, #src
    -- Lua skips a first line that starts with '#' (a shebang): so do we
    if sub(src, 1, 1) == "#" then i = find(src, "\n", 1, true) or n + 1 end
    local function push(t, v, l) toks[#toks + 1] = { t = t, v = v, line = l } end
    while i <= n do
        local c = sub(src, i, i)
        if c == "\n" then
            line = line + 1
            i = i + 1
        elseif find(c, "%s") then
            i = i + 1
        elseif sub(src, i, i + 1) == "--" then
            local eq = src:match("^%[(=*)%[", i + 2)
            local stop
            if eq then
                local close = "]" .. eq .. "]"
                stop = find(src, close, i + 4 + #eq, true)
                stop = stop and stop + #close - 1 or n
            else
                stop = find(src, "\n", i, true) or n + 1
                stop = stop - 1
            end
            for _ in sub(src, i, stop):gmatch("\n") do line = line + 1 end
            i = stop + 1
        elseif c == "\"" or c == "'" then
            local j, start = i + 1, line
            local buf = {}
            while j <= n do
                local d = sub(src, j, j)
                if d == "\\" then
                    local e = sub(src, j + 1, j + 1)
                    if e == "\n" then line = line + 1 end
                    buf[#buf + 1] = e
                    j = j + 2
                elseif d == c then
                    break
                else
                    if d == "\n" then line = line + 1 end
                    buf[#buf + 1] = d
                    j = j + 1
                end
            end
            push("string", table.concat(buf), start)
            i = j + 1
        elseif c == "[" and src:match("^%[=*%[", i) then
            local eq = src:match("^%[(=*)%[", i)
            local close = "]" .. eq .. "]"
            local stop = find(src, close, i + 2 + #eq, true) or n
            local text = sub(src, i + 2 + #eq, stop - 1)
            push("string", text, line)
            for _ in text:gmatch("\n") do line = line + 1 end
            i = stop + #close
        elseif find(c, "[%a_]") then
            local word = src:match("^[%w_]+", i)
            push("name", word, line)
            i = i + #word
        elseif find(c, "%d") or (c == "." and find(sub(src, i + 1, i + 1), "%d")) then
            local num = src:match("^0[xX][%x%.]+", i) or src:match("^[%d%.]+[eE][%+%-]?%d+", i)
                or src:match("^[%d%.]+", i)
            push("number", num, line)
            i = i + #num
        else
            local three, two = sub(src, i, i + 2), sub(src, i, i + 1)
            if three == "..." then
                push("op", three, line); i = i + 3
            elseif two == "==" or two == "~=" or two == "<=" or two == ">=" or two == ".." then
                push("op", two, line); i = i + 2
            else
                push("op", c, line); i = i + 1
            end
        end
    end
    return toks
end

local function child(path, key)
    if type(key) == "number" then return path .. "[" .. key .. "]" end
    if path == "" then return key end
    return path .. "." .. key
end

-- Returns { [path] = line, [""] = line of the returned table }.
function _M.map(src)
    local ok, toks = pcall(tokenize, src)
    local lines = {}
    if not ok then return lines end
    local pos = 1
    local function peek(k) return toks[pos + (k or 0)] end

    local parse_table
    -- Skips one expression, descending into table constructors it meets.
    local function skip_expr(path)
        local depth = 0
        while pos <= #toks do
            local t = peek()
            if t.t == "op" and t.v == "{" and depth == 0 then
                parse_table(path)
            elseif t.t == "op" and (t.v == "(" or t.v == "[" or t.v == "{") then
                depth = depth + 1
                pos = pos + 1
            elseif t.t == "op" and (t.v == ")" or t.v == "]" or t.v == "}") then
                if depth == 0 then return end
                depth = depth - 1
                pos = pos + 1
            elseif depth == 0 and t.t == "op" and (t.v == "," or t.v == ";") then
                return
            else
                pos = pos + 1
            end
        end
    end

    function parse_table(path)
        lines[path] = lines[path] or peek().line
        pos = pos + 1 -- "{"
        local index = 0
        while pos <= #toks do
            local t, start = peek(), pos
            if t.t == "op" and t.v == "}" then
                pos = pos + 1
                return
            end
            if t.t == "op" and (t.v == "," or t.v == ";") then
                pos = pos + 1
            elseif t.t == "name" and peek(1) and peek(1).t == "op" and peek(1).v == "=" then
                local p = child(path, t.v)
                lines[p] = t.line
                pos = pos + 2
                skip_expr(p)
            elseif t.t == "op" and t.v == "[" and peek(1) and (peek(1).t == "string" or peek(1).t == "number")
                and peek(2) and peek(2).v == "]" and peek(3) and peek(3).v == "=" then
                local key = peek(1).t == "number" and tonumber(peek(1).v) or peek(1).v
                local p = child(path, key)
                lines[p] = t.line
                pos = pos + 4
                skip_expr(p)
            else
                index = index + 1
                local p = child(path, index)
                lines[p] = t.line
                skip_expr(p)
            end
            -- a token no branch consumed (a ')' where an entry should be,
            -- in text Lua would refuse): step over it, never loop on it
            if pos == start then pos = pos + 1 end
        end
    end

    -- the table after the last top-level `return`
    for k = #toks, 1, -1 do
        if toks[k].t == "name" and toks[k].v == "return" then
            pos = k + 1
            break
        end
    end
    if peek() and peek().t == "op" and peek().v == "{" then
        lines[""] = peek().line
        pcall(parse_table, "")
    end
    return lines
end

-- The line for path, or the nearest mapped ancestor's, or the table's.
function _M.lookup(lines, path)
    local p = path
    while p and p ~= "" do
        if lines[p] then return lines[p] end
        p = p:match("^(.*)%[%d+%]$") or p:match("^(.*)%.[^%.%[]+$")
    end
    return lines[""] or 1
end

return _M
