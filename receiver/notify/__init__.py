"""Notifiers: one module per integration behind the small interface in `base`."""
