"""Fixtures of the PagerDuty tests: a routing key in a secrets directory, a notifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.config.secrets import SecretStore
from receiver.notify.pagerduty.notifier import PagerDutyNotifier
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.notify.pagerduty.support import close, make_notifier, write_key


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    write_key(tmp_path, ROUTING_KEY)
    return SecretStore(tmp_path, environ={})


@pytest.fixture
def notifier(fake_pagerduty: FakePagerDuty, secrets: SecretStore) -> Iterator[PagerDutyNotifier]:
    pager = make_notifier(fake_pagerduty.url, secrets)
    yield pager
    close(pager)
