return {
  listen = { "127.0.0.1:8080", { address = "[::1]:8081", name = "v6" } },
  workers = 2,
  log_level = "info",
  access_log = "json",
  timeouts = { client_header = 10, client_idle = 60, upstream_connect = 3,
               upstream_response = 60, grace = 10 },
  limits = { max_header_size = 32768, max_headers = 100 },
  upstream = { keepalive = 64, keepalive_timeout = 60, retries = 2 },
  trusted_proxies = { "10.0.0.0/8", "::1" },
  paths = { normalize = true, encoded_slash = "keep" },
  services = {
    api = {
      balancer = "least_conn",
      targets = { "127.0.0.1:9001", { host = "127.0.0.1", port = 9002, weight = 3 } },
      health = { path = "/health", interval = 2 },
    },
    web = { balancer = "roundrobin", targets = { "127.0.0.1:9003" } },
  },
  routes = {
    { rule = "Host(`api.example.com`) && PathPrefix(`/v1`)", service = "api", priority = 10 },
    { rule = "PathPrefix(`/`)", service = "web" },
  },
}
