-- The demo's gateway config (docker-compose.yml at the top level).
-- "api:8000" and "web:80" are Compose service names: Docker's DNS answers
-- with every replica's address, and each becomes a target. Until Docker
-- discovery lands, a scale change is picked up on reload:
--   docker compose kill -s HUP moongate
return {
    listen = "0.0.0.0:8080",
    admin = { listen = "0.0.0.0:8081" }, -- published on 127.0.0.1 only
    services = {
        api = { targets = { "api:8000" } },
        web = { targets = { "web:80" } },
    },
    routes = {
        { rule = "PathPrefix(`/api`)", service = "api" },
        { rule = "PathPrefix(`/`)", service = "web" },
    },
}
