"""Slack: Block Kit rendering, text escaping, buttons, the webhook and bot notifiers."""
