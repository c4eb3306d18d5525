"""Ingest: Alertmanager's webhook in, alerts durably stored, the answer out.

`endpoint` is `POST /alerts` (HTTP: auth, limits, answers), `auth` the bearer token check,
`parse` the webhook parser (JSON body to accepted and rejected alerts).
"""
