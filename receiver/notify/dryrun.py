"""Dry-run: render what a notifier would send, hand it to `emit`, send nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from receiver.models import Notification
from receiver.notify.base import Notifier, Ref

log = logging.getLogger("alert_router.notify.dryrun")

# (destination, the notifications one message carries, the message body)
Emit = Callable[[str, Sequence[Notification], dict[str, Any]], None]


def log_emit(destination: str, batch: Sequence[Notification], body: dict[str, Any]) -> None:
    for notification in batch:
        log.info(
            "dry-run: would send",
            extra={
                "destination": destination,
                "alertname": notification.alert.name,
                "status": notification.alert.status,
                "reason": notification.reason.value,
                "batch": len(batch),
            },
        )
    log.debug("dry-run: message body", extra={"destination": destination, "body": body})


class DryRunNotifier:
    """Wraps a real notifier: renders with it, never sends."""

    def __init__(self, name: str, inner: Notifier, emit: Emit = log_emit) -> None:
        self.name = name
        self._inner = inner
        self._emit = emit

    @property
    def max_batch(self) -> int:
        return self._inner.max_batch

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        bodies = self._inner.render(batch)
        if len(bodies) == len(batch):
            for notification, body in zip(batch, bodies, strict=True):
                self._emit(self.name, [notification], body)
        else:
            # A digest: one message carries the whole batch.
            for body in bodies:
                self._emit(self.name, batch, body)
        return [None] * len(batch)

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        return self._inner.render(batch)

    async def aclose(self) -> None:
        await self._inner.aclose()
