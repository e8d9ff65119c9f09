return {
  services = { web = { targets = { "127.0.0.1:1" } } },
  routes = { { rule = "Host(`a`", service = "web" } },
}
