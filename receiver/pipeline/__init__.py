"""The pipeline: the routing loop, per-destination delivery with retry, housekeeping."""
