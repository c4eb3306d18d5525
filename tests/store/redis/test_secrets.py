"""No Redis password in the store's URL, its errors or its logs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from redis.exceptions import RedisError

from receiver.config.secrets import redact_url
from receiver.store.base import StoreError
from receiver.store.redis.errors import store_errors, url_secrets
from receiver.store.redis.store import RedisStore
from tests.fakes.redis import RedisServer
from tests.store.test_contract import alert
from tests.support import free_port

RedisFactory = Callable[..., RedisServer]

PASSWORD = "Sup3r-s3cret-pw"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:pw@redis:6379/0", "redis://:****@redis:6379/0"),
        ("rediss://user:pw@redis.example:6380", "rediss://user:****@redis.example:6380"),
        # receiver.config.secrets.redact_url drops the query, and the password with it.
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),  # nothing to hide
    ],
)
def test_the_store_shows_its_url_redacted(url: str, redacted: str) -> None:
    store = RedisStore(url)
    assert store.url == redacted
    assert repr(store) == f"RedisStore({redacted!r})"


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("redis://:pw@redis:6379/0", ["pw"]),
        # Raw and decoded: an error text may hold either.
        ("redis://user:p%40ss@redis:6379/0", ["p%40ss", "p@ss"]),
        ("unix:///run/redis.sock?db=0&password=q%2Bw", ["q%2Bw", "q+w"]),
        ("redis://redis:6379/0", []),
    ],
)
def test_url_secrets(url: str, secrets: list[str]) -> None:
    assert url_secrets(url) == secrets


def test_a_redis_error_text_is_scrubbed_of_the_password() -> None:
    # redact_url hides the URL's password, but not one inside an error's own text.
    url = "unix:///run/redis.sock?password=" + PASSWORD
    with pytest.raises(StoreError) as caught, store_errors(redact_url(url), url_secrets(url)):
        raise RedisError(f"Error connecting to {url}: refused")
    text = str(caught.value)
    assert PASSWORD not in text
    assert "****" in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_no_password_in_the_startup_warning(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on the port: open() logs that the store is not usable yet.
    store = RedisStore(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="alert_router.store"):
        await store.open()
    await store.close()
    [record] = [r for r in caplog.records if r.name == "alert_router.store"]
    assert PASSWORD not in record.getMessage()
    assert PASSWORD not in str(record.__dict__)
    assert "****" in record.__dict__["store"]


async def test_password_never_in_a_store_error(redis_factory: RedisFactory) -> None:
    server = redis_factory(password=PASSWORD)
    wrong = server.url.replace(PASSWORD, PASSWORD + "-wrong")
    errors: list[str] = []
    for url in (wrong, server.url.replace("redis://", "redis+bad://")):
        store = RedisStore(url)
        try:
            await store.open()
            await store.check_writable()
        except StoreError as exc:
            errors.append(str(exc))
        finally:
            await store.close()
    store = RedisStore(server.url, socket_timeout=0.5)
    await store.open()
    try:
        await store.check_writable()  # the right password works
        server.stop()
        for operation in (store.ingest([alert()], 100.0, 60), store.check_writable()):
            with pytest.raises(StoreError) as caught:
                await operation
            errors.append(str(caught.value))
    finally:
        await store.close()
    assert len(errors) == 4
    for text in errors:
        assert PASSWORD not in text
        assert "****" in text
