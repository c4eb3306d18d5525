"""Finding episodes: a matcher filter on their labels, a status and a destination, over
the latest changed first (the alerts list of the page and the API)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from receiver.history.summary import EpisodeSummary, summarize
from receiver.matchers import Matcher, parse_matcher
from receiver.store.base import Store

# Episodes read per page of `recent_episodes` while looking for matches.
_PAGE = 200
# One matcher: a name, an operator, and a quoted value (with escapes) or a bare one.
_ONE = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|[^\s,"{}]*))\s*(,?)',
    re.DOTALL,
)


def parse_filter(text: str) -> list[Matcher]:
    """Matchers as Alertmanager's API takes them: `{a="b", c=~"d.*"}` or `a="b" c!="d"`
    (commas or spaces between them, braces optional). ValueError says what is wrong."""
    body = text.strip()
    if body.startswith("{") or body.endswith("}"):
        if not (body.startswith("{") and body.endswith("}")):
            raise ValueError(f'{text!r}: unbalanced braces: write {{name="value", ...}}')
        body = body[1:-1]
    matchers = []
    pos = 0
    while body[pos:].strip():
        found = _ONE.match(body, pos)
        if found is None:
            raise ValueError(
                f"{text!r}: cannot read a matcher at {body[pos:].strip()!r}:"
                ' write name="value" with one of = != =~ !~'
            )
        matchers.append(parse_matcher(found.group(1)))
        pos = found.end()
    return matchers


async def find_episodes(
    store: Store,
    *,
    matchers: Sequence[Matcher] = (),
    status: str | None = None,
    destination: str | None = None,
    since: float,
    limit: int,
) -> list[EpisodeSummary]:
    """The latest changed episodes since `since` whose labels match every matcher, whose
    status is `status` and that went (or were to go) to `destination`; at most `limit`."""
    found: list[EpisodeSummary] = []
    seen: set[tuple[str, str]] = set()
    before: float | None = None
    while len(found) < limit:
        page = await store.recent_episodes(since, _PAGE, before)
        fresh = [m for m, _ in page if (m.fingerprint, m.episode) not in seen]
        seen.update((m.fingerprint, m.episode) for m in fresh)
        wanted = [
            (m.fingerprint, m.episode)
            for m in fresh
            if all(matcher.matches(m.labels) for matcher in matchers)
        ]
        for timeline in await store.timelines(wanted) if wanted else ():
            summary = summarize(timeline)
            if status is not None and summary.status != status:
                continue
            if destination is not None and all(
                o.destination != destination for o in summary.outcomes
            ):
                continue
            found.append(summary)
            if len(found) == limit:
                return found
        if len(page) < _PAGE:
            return found
        # The next page includes the oldest time of this one: episodes changed at the same
        # moment may straddle two pages (those seen are skipped). A page all of one moment
        # (or all seen) moves past it.
        oldest = page[-1][1]
        stuck = not fresh or page[0][1] == oldest
        before = oldest if stuck else math.nextafter(oldest, math.inf)
    return found
