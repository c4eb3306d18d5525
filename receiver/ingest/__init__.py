"""Ingest: Alertmanager's and Grafana Alerting's webhooks in, alerts durably stored, the
answer out.

`endpoint` is `POST`/`PUT /alerts` (HTTP: auth, limits, answers), `auth` the bearer token,
Basic and Grafana's HMAC signature, `parse` the webhook parser (JSON body to accepted and
rejected alerts), `grafana` what Grafana's version-1 webhook adds.
"""
