return {
  listen = { { address = ":8443", tls = true, name = "websecure" }, { address = ":8080", redirect = "https", redirect_port = 8443 } },
  tls = { certificates = { { cert = "/nonexistent.pem", key = "/nonexistent.key" } }, min_version = "1.3" },
  services = { web = { targets = { "https://127.0.0.1:9443" }, tls = { verify = false } } },
  routes = { { rule = "Host(`a`)", service = "web" } },
}
