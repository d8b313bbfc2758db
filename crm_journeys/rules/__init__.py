"""Journey -> durable_rules compilation (pure) and the one engine adapter that runs it."""
