-- The README's tour: one service balanced over two local backends
-- (python3 -m http.server 9001 / 9002), every path routed to it.
--   build/moongate check -c examples/tour/moongate.lua
--   build/moongate -c examples/tour/moongate.lua
return {
  listen = "127.0.0.1:8080",
  services = {
    files = { targets = { "127.0.0.1:9001", "127.0.0.1:9002" } },
  },
  routes = {
    { rule = "PathPrefix(`/`)", service = "files" },
  },
}
