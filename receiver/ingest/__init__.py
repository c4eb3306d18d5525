"""Ingest: the webhook parser and the raw ASGI endpoint that stores alerts before answering."""
