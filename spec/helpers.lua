-- The gateway spec helpers ship inside the binary as moongate.test (so
-- specs in any folder can use them); this name is kept for the specs here.
return require("moongate.test")
