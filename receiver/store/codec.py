"""The stored form of the store's rows: how an Alert, a CostContext, a ref and a queued
notification become bytes (orjson) and come back. Both stores use it, so they read and write
one format; what each store keeps per row (separate columns in SQLite, one hash field in
Redis) is the store's business.

The formats are what existing state already holds: changing one needs a migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from receiver.models import Alert, CostContext, DedupReason
from receiver.store.base import OutboxItem

Stored = bytes | str  # redis-py answers str (decode_responses), sqlite3 bytes


def dump_alert(alert: Alert) -> bytes:
    return orjson.dumps(alert.to_json())


def load_alert(data: Stored) -> Alert:
    return Alert.from_json(orjson.loads(data))


def dump_context(context: CostContext) -> bytes:
    return orjson.dumps(context.to_json())


def load_context(data: Stored) -> CostContext:
    return CostContext.from_json(orjson.loads(data))


def dump_ref(ref: Mapping[str, str] | None) -> bytes | None:
    """A notifier's reference to what it sent (Slack channel and ts), or None when there is
    none to keep (an empty ref is no ref)."""
    return orjson.dumps(dict(ref)) if ref else None


def load_ref(data: Stored | None) -> dict[str, str] | None:
    if not data:
        return None
    ref: dict[str, str] = orjson.loads(data)
    return ref


@dataclass(frozen=True)
class Received:
    """An accepted alert as the Redis inbox keeps it."""

    alert: Alert
    received_at: float


def dump_received(alert: Alert, received_at: float) -> bytes:
    return orjson.dumps({"alert": alert.to_json(), "received_at": received_at})


def load_received(data: Stored) -> Received:
    row = orjson.loads(data)
    return Received(Alert.from_json(row["alert"]), float(row["received_at"]))


@dataclass(frozen=True)
class Notification:
    """A queued notification's payload as the Redis outbox keeps it (one field)."""

    alert: Alert
    context: CostContext
    received_at: float


def dump_notification(alert: Alert, context: CostContext, received_at: float) -> bytes:
    return orjson.dumps(
        {"alert": alert.to_json(), "context": context.to_json(), "received_at": received_at}
    )


def load_notification(data: Stored) -> Notification:
    row: dict[str, Any] = orjson.loads(data)
    return Notification(
        Alert.from_json(row["alert"]),
        CostContext.from_json(row["context"]),
        float(row["received_at"]),
    )


def outbox_item(
    *,
    item_id: str,
    destination: str,
    route: str,
    reason: str,
    notification: Notification,
    attempts: int | str,
    ref: Stored | None,
    taken_over: bool = False,
) -> OutboxItem:
    """An outbox row as the pipeline sees it, from the fields either store reads back."""
    return OutboxItem(
        id=item_id,
        destination=destination,
        route=route,
        reason=DedupReason(reason),
        alert=notification.alert,
        context=notification.context,
        received_at=notification.received_at,
        attempts=int(attempts),
        ref=load_ref(ref),
        taken_over=taken_over,
    )
