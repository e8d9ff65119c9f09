-- The balancer conformance kit ships inside the binary as
-- moongate.test.balancer_kit; this name is kept for the specs here.
return require("moongate.test.balancer_kit")
