"""Configuration: settings, the rules file and its located errors, durations, secrets, reload."""
