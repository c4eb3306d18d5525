"""What the rules holder tells the status page: the checksum and time of the rules in force,
and the latest refused load's problems until a load succeeds again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from receiver.config.reloader import RulesHolder
from receiver.config.rules import RulesError
from receiver.metrics import Metrics

ONE = """
destinations:
  a: {slack: {webhook_url: {secret: slack-webhook-url}}}
default: a
"""
BROKEN = ONE.replace("default: a", "default: nowhere")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def holder_for(path: Path, clock: Clock) -> RulesHolder:
    return RulesHolder(path, Metrics(CollectorRegistry()), clock=clock)


def test_a_load_keeps_the_checksum_of_the_bytes_and_its_time(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ONE)
    clock = Clock()
    holder = holder_for(path, clock)
    assert (holder.checksum, holder.loaded_at, holder.last_error) == (None, None, None)
    holder.load()
    assert holder.checksum == hashlib.sha256(ONE.encode()).hexdigest()
    assert holder.loaded_at == clock.now
    assert holder.last_error is None


def test_a_refused_reload_keeps_the_rules_in_force_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ONE)
    clock = Clock()
    holder = holder_for(path, clock)
    holder.load()
    loaded_at = holder.loaded_at
    clock.now += 60
    path.write_text(BROKEN)
    assert not holder.reload("file changed")
    # The rules in force, and what identifies them, are the old ones.
    assert holder.rules.default == "a"
    assert holder.checksum == hashlib.sha256(ONE.encode()).hexdigest()
    assert holder.loaded_at == loaded_at
    assert holder.last_error is not None
    assert "nowhere" in holder.last_error
    assert holder.last_error_at == clock.now

    clock.now += 60
    path.write_text(ONE.replace("a:", "a: ", 1))
    assert holder.reload("file changed")
    assert holder.last_error is None
    assert holder.last_error_at is None
    assert holder.loaded_at == clock.now
    assert holder.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_missing_file_is_an_error_with_no_checksum(tmp_path: Path) -> None:
    clock = Clock()
    holder = holder_for(tmp_path / "absent.yaml", clock)
    with pytest.raises(RulesError, match="cannot read the rules file"):
        holder.load()
    assert holder.checksum is None
    assert holder.last_error is not None
    assert "cannot read the rules file" in holder.last_error
