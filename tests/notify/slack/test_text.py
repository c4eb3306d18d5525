"""mrkdwn text: escaping, truncation, links; and the shared helpers the messages use."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

from receiver.notify.slack.render import silence_url
from receiver.notify.slack.text import clip_plain, escape, fit, mrkdwn_link, safe_url, slack_date
from tests.notify.slack.support import all_text, make_alert, notification, offline, resolved


def test_escape_defuses_mentions_and_entities() -> None:
    assert (
        escape("<!channel> & @here @everyone")
        == "&lt;!channel&gt; &amp; @\u2060here @\u2060everyone"
    )
    assert escape("mail@heresy.example") == "mail@heresy.example"  # not the word "here"


def test_fit_cuts_with_an_ellipsis_and_never_inside_an_entity() -> None:
    assert fit("short", 10) == "short"
    assert fit("abcdefghij", 5) == "abcd…"
    assert fit("abc&def", 6) == "abc…"  # "&amp;" would not fit whole
    assert clip_plain("abcdefghij", 5) == "abcd…"


def test_links_only_for_http_urls_of_a_sane_length() -> None:
    assert mrkdwn_link("https://a.example/x?y=1&z=<2>", "L&L") == (
        "<https://a.example/x?y=1&amp;z=%3C2%3E|L&amp;L>"
    )
    assert mrkdwn_link("javascript:alert(1)", "label") == "label"
    assert safe_url("https://a.example/" + "x" * 3000) is None


def test_slack_date_has_a_utc_fallback() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    assert slack_date(when) == (
        f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|2024-05-01T12:00:00.000Z>"
    )


def test_silence_link_escapes_a_newline_in_a_label_value() -> None:
    alert = make_alert(labels={"note": 'two\nlines "quoted" \\ back'})

    url = silence_url(alert)

    assert url is not None
    matchers = urllib.parse.unquote(url.split("filter=", 1)[1])
    assert 'note="two\\nlines \\"quoted\\" \\\\ back"' in matchers
    assert "\n" not in matchers


def test_a_resolve_says_how_long_the_alert_lasted_for_people() -> None:
    firing = notification(make_alert())

    (body,) = offline().render([resolved(firing, None)])

    assert "after 1h 20m" in all_text(body)
