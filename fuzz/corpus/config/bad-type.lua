return { services = 3 }
