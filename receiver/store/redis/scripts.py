"""The Redis store's Lua scripts: read from the `lua/` folder of this package, completed, and
registered on a client.

A script names the library files it needs in a header line (`-- Prepended when loaded:
lib/claim.lua ...`); their text goes in front of it, so every script is one self-contained
EVAL. `${DedupReason.NAME}` and `${SENDING}` are filled in from Python, so each reason's
value is written in one place (receiver.models.DedupReason).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from receiver.dedup import SENDING
from receiver.models import DedupReason

# The scripts the store runs, by name: `lua/<name>.lua`.
NAMES = (
    "ingest",
    "claim_inbox",
    "claim_outbox",
    "plan",
    "delivered",
    "reschedule",
    "dead_letter",
    "dead_letters",
    "replay",
    "queued",
    "purge",
    "reserve_send",
    "pause",
    "renew",
    "release",
    "claim_report_slot",
    "claim_report_sends",
    "renew_report_sends",
    "settle_report_send",
    "replay_reports",
    "history_record",
    "history_purge",
)
# The scripts that only read: the ones a read-only store may run.
READ_ONLY = frozenset({"dead_letters"})

_PREPENDED = re.compile(r"^-- Prepended when loaded: (\S+\.lua)", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\$\{(\w+(?:\.\w+)?)\}")
# A value placed inside a Lua string literal must need no escaping.
_PLAIN = re.compile(r"[a-z_]+")


def lua_folder() -> Traversable:
    """The installed `lua/` folder (package data, so it ships in the wheel)."""
    return files(__package__) / "lua"


def _values() -> dict[str, str]:
    values = {f"DedupReason.{reason.name}": reason.value for reason in DedupReason}
    for name, value in values.items():
        if not _PLAIN.fullmatch(value):
            raise ValueError(f"{name} = {value!r} cannot be written into a Lua string as is")
    sending = ", ".join(f"['{reason.value}'] = true" for reason in sorted(SENDING))
    values["SENDING"] = "{" + sending + "}"
    return values


def _fill(text: str, values: Mapping[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"{where}: unknown placeholder ${{{name}}}")
        return values[name]

    return _PLACEHOLDER.sub(one, text)


def _read(path: str) -> str:
    return (lua_folder() / path).read_text(encoding="utf-8")


def library(path: str) -> str:
    """One library file (`lib/decide.lua`), completed: its functions, ready to prepend."""
    return _fill(_read(path), _values(), path)


def requires(name: str) -> list[str]:
    """The library files script `name` names in its header, in order."""
    return _PREPENDED.findall(_read(f"{name}.lua"))


def source(name: str) -> str:
    """The complete text of script `name`: its library files, then the script itself."""
    path = f"{name}.lua"
    parts = [library(lib) for lib in requires(name)]
    parts.append(_fill(_read(path), _values(), path))
    return "\n".join(parts)


def register(client: Redis) -> dict[str, AsyncScript]:
    """Every script, registered on `client` (EVALSHA, loaded again if Redis lost it)."""
    return {name: client.register_script(source(name)) for name in NAMES}
