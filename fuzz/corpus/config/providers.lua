return { providers = { docker = { endpoint = "unix:///nonexistent.sock" } } }
