-- Docker discovery: no services here, containers bring their own labels.
return {
    listen = "0.0.0.0:8080",
    admin = { listen = "0.0.0.0:8081" },
    providers = { docker = {} },
}
