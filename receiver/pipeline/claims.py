"""The claims this pipeline holds: what the heartbeat renews and a stop releases.

A claim is a lease in the store with this pipeline as its owner. Routing and delivery
note here what they claimed, which notifications are being sent, and what they settled;
the heartbeat (`heartbeat.py`) renews the rest, so a live replica keeps its work however
slow, and `Pipeline.stop` releases all but the sends in flight, so the other replicas take
it at once. A send in flight is never released: it may have reached the vendor, and
another replica sending it too is the one duplicate the pipeline allows (after a crash, or
a send abandoned at a stop), counted when its lease runs out and another replica takes it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence

from receiver.store.base import Claims, InboxItem, OutboxItem

log = logging.getLogger("alert_router.pipeline")

# Called with ("inbox" or "outbox", count) for claims taken over from an owner whose lease
# ran out.
OnTakeover = Callable[[str, int], None]


def new_owner() -> str:
    """An owner id for one pipeline: unique across replicas and restarts."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


class Held:
    """The inbox items and outbox notifications this pipeline has claimed and not settled."""

    def __init__(self, owner: str, on_takeover: OnTakeover) -> None:
        self.owner = owner
        self._on_takeover = on_takeover
        self._inbox: set[str] = set()
        # Outbox id -> its destination.
        self._outbox: dict[str, str] = {}
        self._sending: set[str] = set()

    def took_inbox(self, items: Sequence[InboxItem]) -> None:
        self._inbox.update(item.id for item in items)
        self._count_takeovers("inbox", sum(item.taken_over for item in items))

    def took_outbox(self, items: Sequence[OutboxItem]) -> None:
        self._outbox.update((item.id, item.destination) for item in items)
        taken = [item for item in items if item.taken_over]
        self._count_takeovers("outbox", len(taken))
        if taken:
            # Each was claimed by a replica that died or stalled, maybe mid-send.
            log.warning(
                "notifications taken over from a replica whose lease ran out; each may be"
                " a duplicate, if that replica was sending it",
                extra={
                    "destination": taken[0].destination,
                    "count": len(taken),
                    "episodes": [item.alert.episode for item in taken],
                },
            )

    def sending(self, items: Iterable[OutboxItem]) -> None:
        """`items` are being sent: from now on only settling them ends their claim."""
        self._sending.update(item.id for item in items)

    def settled(self, *, inbox: Iterable[str] = (), outbox: Iterable[str] = ()) -> None:
        """Done with these claims (routed, delivered, rescheduled, dead-lettered, or given
        up after an error: then they come back when their lease runs out)."""
        self._inbox.difference_update(inbox)
        for id_ in outbox:
            self._outbox.pop(id_, None)
            self._sending.discard(id_)

    def lost(self, claims: Claims) -> None:
        """Claims the store says this pipeline no longer holds."""
        self.settled(inbox=claims.inbox, outbox=claims.outbox)

    def all(self) -> Claims:
        return Claims(tuple(sorted(self._inbox)), tuple(sorted(self._outbox)))

    def sending_to(self) -> set[str]:
        """The destinations with a send in flight."""
        return {self._outbox[id_] for id_ in self._sending if id_ in self._outbox}

    def releasable(self, *, inbox: bool = True, skip: Iterable[str] = ()) -> Claims:
        """The claims no send holds: the inbox items (unless `inbox` is False) and the
        notifications not being sent, except those of the destinations in `skip`."""
        skipped = set(skip)
        outbox = (
            id_
            for id_, dest in self._outbox.items()
            if id_ not in self._sending and dest not in skipped
        )
        return Claims(tuple(sorted(self._inbox)) if inbox else (), tuple(sorted(outbox)))

    def in_flight(self) -> int:
        return len(self._sending)

    def _count_takeovers(self, queue: str, count: int) -> None:
        if count:
            self._on_takeover(queue, count)
