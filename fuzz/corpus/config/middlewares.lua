return {
  services = { web = { targets = { "127.0.0.1:9001" } } },
  middlewares = {
    auth = { plugin = "basic_auth", users = { alice = "s3cret" } },
    strip = { plugin = "strip_prefix", prefixes = { "/api" } },
    limit = { plugin = "rate_limit", rate = 10, burst = 20 },
  },
  routes = { { rule = "PathPrefix(`/api`)", service = "web", middlewares = { "auth", "strip", "limit" } } },
}
