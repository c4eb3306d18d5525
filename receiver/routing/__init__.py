"""Routing: Alertmanager matchers, the route table, explanations and rule tests."""
