"""redact_url: the one way a URL reaches a log line or an error."""

from __future__ import annotations

import pytest

from receiver.config.secrets import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://prometheus:9090", "http://prometheus:9090"),
        ("http://prometheus:9090/api/v1/query", "http://prometheus:9090/api/v1/query"),
        # The password is masked, the user kept (it says which account).
        ("redis://:s3cret@redis:6379/0", "redis://:****@redis:6379/0"),
        ("redis://router:s3cret@redis:6379/0", "redis://router:****@redis:6379/0"),
        ("http://user@proxy:3128/", "http://user@proxy:3128/"),
        # Query and fragment can carry tokens: dropped.
        ("redis://redis:6379/0?password=s3cret", "redis://redis:6379/0"),
        (
            "https://events.example.com/v2/enqueue?token=abc#frag",
            "https://events.example.com/v2/enqueue",
        ),
        # IPv6 hosts keep their brackets, so the port stays readable.
        ("http://[::1]:9093/api/v2/silences", "http://[::1]:9093/api/v2/silences"),
        ("http://u:p@[fe80::1]:80/x", "http://u:****@[fe80::1]:80/x"),
        # A port that is not a number cannot be shown safely.
        ("http://host:notaport/", "<invalid URL>"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_never_shows_the_password() -> None:
    for url in [
        "redis://:pw-x1@h/0",
        "http://a:pw-x1@h",
        "http://h/?password=pw-x1",
        "http://h/#pw-x1",
    ]:
        assert "pw-x1" not in redact_url(url)
