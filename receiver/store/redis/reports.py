"""The Redis store's scheduled reports: the slots taken and each destination's send.

The one caller whose set-if-absent takes a slot queues its sends in the same script
(`lua/claim_report_slot.lua`). A send is leased like an outbox notification
(`P:report:sends`, scored by when it is claimable); only its owner settles it
(`lua/settle_report_send.lua`): sent, queued again after a failure, or kept as a dead
letter (`report-<id>` in `dead-letters`) until it is replayed. Key layout: `keys.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from receiver.store import codec
from receiver.store.base import REPORT_DEAD_LETTER, DeadLetter, ReportSend
from receiver.store.redis.plumbing import RedisPlumbing, num

# A taken report slot's key lives this long: far longer than replicas race for a slot;
# after it, `P:report:last` (no TTL) keeps the slot from being taken again.
REPORT_SLOT_TTL = 7 * 86400


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ReportQueue(RedisPlumbing):
    """The report half of RedisStore."""

    async def claim_report_slot(
        self,
        report: str,
        slot_at: datetime,
        owner: str,
        destinations: Sequence[str] = (),
        *,
        late: bool = False,
    ) -> bool:
        k = self._keys
        at = slot_at.timestamp()
        taken = await self._script(
            "claim_report_slot",
            [k.report_slot(report, at), k.report_last, k.report_seq, k.report_sends],
            [owner, report, num(at), REPORT_SLOT_TTL, "1" if late else "0", k.report_send,
             *destinations],
        )  # fmt: skip
        return bool(taken)

    async def last_report_slot(self, report: str) -> datetime | None:
        with self._errors():
            last = await self._redis().hget(self._keys.report_last, report)
        return None if last is None else datetime.fromtimestamp(float(last), UTC)

    async def claim_report_sends(
        self, limit: int, now: float, lease: float, owner: str
    ) -> list[ReportSend]:
        k = self._keys
        rows = await self._script(
            "claim_report_sends",
            [k.report_sends],
            [num(now), num(now + lease), owner, limit, k.report_send],
        )
        sends = []
        for id_, report, slot_at, late, destination, attempts, posted, previous in rows:
            sends.append(
                ReportSend(
                    id=_text(id_),
                    report=_text(report),
                    slot_at=datetime.fromtimestamp(float(slot_at), UTC),
                    late=_text(late) == "1",
                    destination=_text(destination),
                    attempts=int(attempts),
                    posted=codec.load_ref(posted) if posted else None,
                    # Rescheduling clears the owner: one left means a lease that ran out.
                    taken_over=_text(previous) != "",
                )
            )
        # Oldest slot first, as the SQLite store claims them.
        return sorted(sends, key=lambda s: (s.slot_at, int(s.id)))

    async def renew_report_sends(
        self, owner: str, ids: Sequence[str], now: float, lease: float
    ) -> set[str]:
        if not ids:
            return set()
        k = self._keys
        held = await self._script(
            "renew_report_sends",
            [k.report_sends],
            [num(now), num(now + lease), owner, k.report_send, *ids],
        )
        return {_text(id_) for id_ in held}

    async def _settle(self, owner: str, send: ReportSend, *args: str) -> bool:
        k = self._keys
        done = await self._script(
            "settle_report_send",
            [k.report_sends, k.report_dead],
            [owner, k.report_send, send.id, *args],
        )
        return bool(done)

    async def report_sent(self, owner: str, send: ReportSend) -> bool:
        return await self._settle(owner, send, "sent")

    async def reschedule_report_send(
        self,
        owner: str,
        send: ReportSend,
        not_before: float,
        error: str,
        posted: Mapping[str, str] | None,
    ) -> None:
        ref = codec.dump_ref(posted)
        await self._settle(
            owner, send, "retry", num(not_before), error, "" if ref is None else ref.decode()
        )

    async def dead_letter_report_send(
        self, owner: str, send: ReportSend, error: str, now: float
    ) -> None:
        await self._settle(owner, send, "dead", error, num(now))

    async def _report_dead_letters(self) -> list[DeadLetter]:
        k = self._keys
        fields = ["destination", "report", "slot_at", "error", "attempts", "failed_at"]
        with self._errors():
            ids = [_text(i) for i in await self._redis().zrange(k.report_dead, 0, -1)]
            async with self._redis().pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hmget(k.report_send + id_, fields)
                rows = await pipe.execute() if ids else []
        letters = []
        for id_, row in zip(ids, rows, strict=True):
            destination, report, slot_at, error, attempts, failed_at = row
            if destination is None:
                continue
            letters.append(
                DeadLetter(
                    id=f"{REPORT_DEAD_LETTER}{id_}",
                    destination=_text(destination),
                    alertname=_text(report),
                    episode=datetime.fromtimestamp(float(slot_at), UTC).isoformat(),
                    status="report",
                    error=_text(error or b""),
                    attempts=int(attempts or 0),
                    failed_at=float(failed_at or 0),
                )
            )
        return letters

    async def _replay_reports(self, ids: Sequence[str] | None) -> int:
        k = self._keys
        chosen = [] if ids is None else [i.removeprefix(REPORT_DEAD_LETTER) for i in ids]
        count = await self._script(
            "replay_reports",
            [k.report_dead, k.report_sends],
            [k.report_send, "1" if ids is None else "0", *chosen],
        )
        return int(count)
