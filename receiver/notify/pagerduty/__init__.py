"""PagerDuty Events API v2: event builders and the notifier."""
