local targets = { "127.0.0.1:9001", "127.0.0.1:9002" }
return {
  services = {
    a = { balancer = "ewma", targets = targets },
    b = { balancer = "chash", balancer_opts = { key = "header:X-User" }, targets = targets },
    c = { balancer = "p2c", targets = targets },
    d = { balancer = "sticky", targets = targets },
  },
  routes = {
    { rule = "PathPrefix(`/a`)", service = "a" },
    { rule = "PathPrefix(`/b`)", service = "b" },
    { rule = "PathPrefix(`/c`)", service = "c" },
    { rule = "PathPrefix(`/d`)", service = "d", allow_trace = true },
  },
}
