"""Slack interactivity: the endpoint, signature checks, silence and acknowledge."""
