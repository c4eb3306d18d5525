"""The demo: the main job on a fresh machine. Never imported by `serve`."""
