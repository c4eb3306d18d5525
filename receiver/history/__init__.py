"""What happened to each alert, and why: the event log of every episode (issue 15)."""
