"""The web page at /ui/ and the JSON API at /api/v1/: what happened to each alert and why,
the dead letters with a Retry button, the status, and the rules with a route tester.

Both answer only with the `ui-password` credential (`auth.py`); a write needs the CSRF token
and a same-origin request (`csrf.py`); every answer carries the security headers
(`headers.py`). `app.py` wires the routes for `receiver.server`.
"""
