-- A static config for the e2e stack: two api containers by name.
return {
    listen = "0.0.0.0:8080",
    workers = 2,
    services = {
        api = { targets = { "api1:8000", "api2:8000" } },
        web = { targets = { "web:80" } },
    },
    routes = {
        { rule = "PathPrefix(`/api`)", service = "api" },
        { rule = "PathPrefix(`/`)", service = "web" },
    },
}
