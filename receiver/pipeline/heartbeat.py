"""The heartbeat: renews every claim this pipeline holds, so claims live as long as it does.

Leases are short (`Tuning.lease`, 12 s by default) so that a replica that dies gives its
work up within one lease; a live one renews its claims three times a lease, so that work
it is slow at (a vendor taking its time, a long digest) stays its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from receiver.pipeline.claims import Held
from receiver.pipeline.scheduler import pause
from receiver.pipeline.tuning import Tuning
from receiver.store.base import Store, StoreError

log = logging.getLogger("alert_router.pipeline")

# Renewals per lease: one late or failed renewal still leaves a third of the lease.
RENEWALS_PER_LEASE = 3


class Heartbeat:
    def __init__(
        self,
        store: Store,
        held: Held,
        *,
        clock: Callable[[], float],
        tuning: Callable[[], Tuning],
        stopping: asyncio.Event,
    ) -> None:
        self._store = store
        self._held = held
        self._clock = clock
        self._tuning = tuning
        self._stopping = stopping

    async def run(self) -> None:
        """Renew every `lease / 3` seconds, until `stopping` is set."""
        while not self._stopping.is_set():
            await pause(self._stopping, self._tuning().lease / RENEWALS_PER_LEASE)
            if self._stopping.is_set():
                return
            try:
                await self.renew_once()
            except StoreError as exc:
                # The next beat tries again; the leases hold until then.
                log.warning("renewing claims failed", extra={"error": str(exc)})

    async def renew_once(self) -> int:
        """Renew what is held now; returns how many claims were renewed."""
        claims = self._held.all()
        if not claims:
            return 0
        lease = self._tuning().lease
        lost = await self._store.renew(self._held.owner, claims, self._clock(), lease)
        if lost:
            # Settled meanwhile (routing or delivery finished while the renewal ran), or run
            # out: the pipeline stalled for a whole lease, and another replica may have
            # taken them.
            self._held.lost(lost)
            log.info(
                "claims no longer held at renewal",
                extra={"inbox": len(lost.inbox), "outbox": len(lost.outbox)},
            )
        return len(claims.inbox) + len(claims.outbox) - len(lost.inbox) - len(lost.outbox)
