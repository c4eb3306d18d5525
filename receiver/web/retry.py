"""Retrying a dead letter from the page or the API: queue it again, record who did it in
the alert's history, and log the write."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from receiver.history.capture import replayed_events
from receiver.store.base import DeadLetter
from receiver.web.deps import WebDeps

log = logging.getLogger("alert_router.web")


@dataclass(frozen=True)
class Retried:
    id: str
    # "queued": sent again by the next delivery round; "not_found": no such dead letter
    # (already retried, from another tab or the CLI).
    outcome: str
    letter: DeadLetter | None = None


async def retry_dead_letter(deps: WebDeps, letter_id: str, who: str) -> Retried:
    letter = next((d for d in await deps.store.dead_letters() if d.id == letter_id), None)
    now = deps.clock()
    queued = letter is not None and await deps.store.replay_dead_letters([letter_id], now) > 0
    if letter is None or not queued:
        log.info(
            "dead letter retry: no such dead letter",
            extra={"who": who, "what": "retry", "dead_letter": letter_id, "outcome": "not_found"},
        )
        return Retried(letter_id, "not_found")
    for event in replayed_events({letter_id: letter}, [letter_id], now, by=f"ui:{who}"):
        deps.record(event, None)
    log.info(
        "dead letter retried",
        extra={
            "who": who,
            "what": "retry",
            "dead_letter": letter_id,
            "destination": letter.destination,
            "alertname": letter.alertname,
            "outcome": "queued",
        },
    )
    return Retried(letter_id, "queued", letter)
