"""PagerDuty Events API v2: `events` builds the events (pure), `client` sets up the vendor's
HTTP client to send once, `notifier` sends and maps PagerDuty's answers to NotifyError."""
