"""Scheduled cost reports: when they fire (`schedule`), what they say (`sections`, computed
from Prometheus range queries into a `Report`), and how they look (`render` for the
terminal, `chart` for the PNG). Slack's Block Kit form is `receiver.notify.slack.report`."""
