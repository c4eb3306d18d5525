"""The interface every notifier implements (Alertmanager's `Notifier.Notify`).

A notifier knows its vendor: how to render a notification, which answers mean
"try again" and which are final. The pipeline owns retries, backoff, rate limits
and the dedup ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from receiver.models import Notification

# What a destination answered for a delivered notification (Slack: channel and ts),
# kept in the ledger so that a later resolve can refer to it.
Ref = Mapping[str, str]


class NotifyError(Exception):
    """Delivery failed. `recoverable` says whether trying again can succeed.

    The message must never contain a secret (webhook URL, token, routing key).
    """

    def __init__(
        self,
        message: str,
        *,
        recoverable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        """`status`: the vendor's HTTP status, when it answered (the history shows it)."""
        super().__init__(message)
        self.recoverable = recoverable
        self.retry_after = retry_after
        self.status = status


class Notifier(Protocol):
    """Delivers notifications to one destination."""

    @property
    def max_batch(self) -> int:
        """How many notifications one `notify` call may carry (a Slack digest: many)."""
        ...

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        """Deliver `batch`; return one ref (or None) per notification, in order.

        Raises NotifyError when the batch was not delivered.
        """
        ...

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        """The request bodies `notify` would send, secrets left out (for dry-run)."""
        ...

    async def aclose(self) -> None:
        """Release the destination's pooled connection; called when the destination is
        rebuilt (a rules reload) or at shutdown. The notifier is not used afterwards."""
        ...
