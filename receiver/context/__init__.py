"""Cost context: the Prometheus client, cache and join, budgets, incident cost, units."""
