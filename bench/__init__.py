"""`make bench`: alert-router against a bare Starlette endpoint, on this machine, in one run.

`python -m bench` prints one JSON document; see bench/run.py for what is measured and how.
"""
