"""SecretStore: files of a mounted Secret, the environment as fallback, rotation."""

from __future__ import annotations

import os
import time
from pathlib import Path

from receiver.config.secrets import SecretStore


def _write(path: Path, text: str, bump: float = 0.0) -> None:
    path.write_text(text)
    if bump:
        later = time.time() + bump
        os.utime(path, (later, later))


def test_file_wins_over_environment(tmp_path: Path) -> None:
    _write(tmp_path / "webhook-token", "from-file\n")
    store = SecretStore(tmp_path, environ={"WEBHOOK_TOKEN": "from-env"})
    secret = store.get("webhook-token")
    assert secret is not None and secret.reveal() == "from-file"


def test_environment_when_no_file_and_none_when_neither(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, environ={"WEBHOOK_TOKEN": "from-env"})
    secret = store.get("webhook-token")
    assert secret is not None and secret.reveal() == "from-env"
    assert store.get("pagerduty-key") is None


def test_a_changed_file_is_read_again_on_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "webhook-token"
    _write(path, "first")
    store = SecretStore(tmp_path, environ={})
    assert store.get("webhook-token", max_age=60).reveal() == "first"  # type: ignore[union-attr]
    _write(path, "second", bump=5)
    # Without max_age the file is looked at every time.
    assert store.get("webhook-token").reveal() == "second"  # type: ignore[union-attr]


def test_max_age_spares_the_look_at_the_file_until_it_passes(tmp_path: Path) -> None:
    path = tmp_path / "webhook-token"
    _write(path, "first")
    store = SecretStore(tmp_path, environ={})
    assert store.get("webhook-token", max_age=0.3).reveal() == "first"  # type: ignore[union-attr]
    _write(path, "second", bump=5)
    assert store.get("webhook-token", max_age=0.3).reveal() == "first"  # type: ignore[union-attr]
    time.sleep(0.35)
    assert store.get("webhook-token", max_age=0.3).reveal() == "second"  # type: ignore[union-attr]


def test_a_file_that_appears_replaces_the_environment(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, environ={"WEBHOOK_TOKEN": "from-env"})
    assert store.get("webhook-token").reveal() == "from-env"  # type: ignore[union-attr]
    _write(tmp_path / "webhook-token", "from-file")
    assert store.get("webhook-token").reveal() == "from-file"  # type: ignore[union-attr]


def test_an_emptied_file_is_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "webhook-token"
    _write(path, "value")
    store = SecretStore(tmp_path, environ={})
    assert store.get("webhook-token") is not None
    _write(path, "  \n", bump=5)
    assert store.get("webhook-token") is None
    assert store.get("webhook-token", max_age=60) is None


def test_secret_never_prints_its_value(tmp_path: Path) -> None:
    _write(tmp_path / "webhook-token", "s3cr3t-value")
    secret = SecretStore(tmp_path, environ={}).get("webhook-token")
    assert secret is not None
    assert "s3cr3t" not in repr(secret) + str(secret) + f"{secret}"
