#return { routes = { { rule =) "PathPrefix(`/`)", sertlse = "nope" } } }
