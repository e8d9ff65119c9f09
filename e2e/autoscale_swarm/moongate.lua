-- Autoscaling e2e on Swarm: both services opt in by their deploy labels.
return {
    listen = "0.0.0.0:8080",
    admin = { listen = "0.0.0.0:8081" },
    timeouts = { queue = 30 },
    providers = { swarm = {} },
}
