"""What the page and the API are given by the server, wired explicitly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from receiver.config.reloader import RulesHolder
from receiver.config.rules import Rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.events import EpisodeMeta, Event
from receiver.store.base import Store


@dataclass(frozen=True)
class WebDeps:
    store: Store
    # The rules in force (the holder's, read at each request: a reload applies at once).
    rules: Callable[[], Rules]
    # The rules file's checksum, time of load and last reload error (the status).
    holder: RulesHolder
    secrets: SecretStore
    settings: Settings
    # Where a write's event goes (the history recorder's `record`: never awaits).
    record: Callable[[Event, EpisodeMeta | None], None]
    clock: Callable[[], float] = field(default=time.time)
