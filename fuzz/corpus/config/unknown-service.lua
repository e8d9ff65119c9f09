return { routes = { { rule = "PathPrefix(`/`)", service = "nope" } } }
