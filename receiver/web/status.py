"""The router's status: queue depths, each destination's last delivery, last error and
pause, and the rules file in force with its checksum, time of load and last reload error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.config.schema import DestinationSpec
from receiver.store.base import DestinationState
from receiver.web.deps import WebDeps
from receiver.web.present import destination_json, rfc3339


@dataclass(frozen=True)
class DestinationRow:
    name: str
    kind: str
    state: DestinationState


@dataclass(frozen=True)
class Status:
    depths: dict[str, int]
    destinations: list[DestinationRow]
    rules_path: str
    checksum: str | None
    loaded_at: float | None
    last_error: str | None
    last_error_at: float | None

    @property
    def problems(self) -> list[tuple[str, str]]:
        """What needs a person, worst first, each with its colour ("bad" or "warn")."""
        found = []
        letters = self.depths.get("dead_letters", 0)
        if letters:
            found.append(("bad", f"{letters} dead letter{'s' if letters != 1 else ''} waiting"))
        for row in self.destinations:
            state = row.state
            if state.last_error_at is not None and (
                state.last_delivered_at is None or state.last_error_at > state.last_delivered_at
            ):
                found.append(("bad", f"{row.name}: the last try failed ({state.last_error})"))
        for row in self.destinations:
            if row.state.paused_until is not None:
                found.append(("warn", f"{row.name}: paused by the vendor's Retry-After"))
        if self.last_error is not None:
            found.append(("warn", "the last rules reload was refused: the previous rules serve"))
        return found

    @property
    def health(self) -> str:
        """The overview's colour: "bad", "warn" or "ok"."""
        levels = {level for level, _ in self.problems}
        return "bad" if "bad" in levels else "warn" if levels else "ok"


def kind_of(spec: DestinationSpec) -> str:
    if spec.pagerduty is not None:
        return "pagerduty"
    assert spec.slack is not None
    return "slack bot" if spec.slack.token is not None else "slack webhook"


async def read_status(deps: WebDeps, now: float) -> Status:
    depths = await deps.store.depths()
    states = await deps.store.destination_states()
    destinations = []
    if deps.holder.loaded:
        for name, spec in deps.rules().destinations.items():
            state = states.get(name, DestinationState())
            if state.paused_until is not None and state.paused_until <= now:
                state = DestinationState(
                    state.last_delivered_at, state.last_error, state.last_error_at
                )
            destinations.append(DestinationRow(name, kind_of(spec), state))
    holder = deps.holder
    return Status(
        depths=depths,
        destinations=destinations,
        rules_path=str(holder.path),
        checksum=holder.checksum,
        loaded_at=holder.loaded_at,
        last_error=holder.last_error,
        last_error_at=holder.last_error_at,
    )


def status_json(status: Status) -> dict[str, Any]:
    return {
        "queues": status.depths,
        "destinations": {
            row.name: destination_json(row.kind, row.state) for row in status.destinations
        },
        "rules": {
            "path": status.rules_path,
            "checksum": status.checksum,
            "loaded_at": rfc3339(status.loaded_at),
            "last_error": status.last_error,
            "last_error_at": rfc3339(status.last_error_at),
        },
    }
