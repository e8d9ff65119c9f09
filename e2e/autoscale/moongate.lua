-- Autoscaling e2e: `slow` opts in by its labels; `cold` (scale to zero)
-- by this file, which also keeps its route while it has no replica.
return {
    listen = "0.0.0.0:8080",
    admin = { listen = "0.0.0.0:8081" },
    timeouts = { queue = 30 },
    providers = { docker = {} },
    services = {
        cold = { targets = {}, autoscale = { min = 0, max = 1, target = 4, scale_down_window = 3,
                 compose = { project = os.getenv("PROJECT"), service = "cold" } } },
    },
    routes = { { rule = "PathPrefix(`/cold`)", service = "cold" } },
}
