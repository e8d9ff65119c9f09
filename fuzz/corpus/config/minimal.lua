return {
  services = { web = { targets = { "127.0.0.1:9001" } } },
  routes = { { rule = "PathPrefix(`/`)", service = "web" } },
}
