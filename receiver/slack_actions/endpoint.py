"""Slack interactivity: `POST /slack/actions`, where the buttons of bot messages land.

Every request is verified with the Slack app's signing secret (secret
`slack-signing-secret`) by slack_sdk's SignatureVerifier: HMAC-SHA256 over
`v0:{timestamp}:{body}`, compared in constant time; a timestamp more than five minutes
away is refused, and so is a second request with a signature already seen. Nothing is
read from a request before that. The Alertmanager bearer token plays no part here.

A press acts at once, while Slack waits (Slack: answer within 3 seconds; what is not done
by then finishes in the background and still reports to the user):

- Silence: an Alertmanager silence (API v2) with an equality matcher for each of the
  alert's labels. One per message: a second press, or a Slack retry, finds the silence
  by the marker in its comment and reuses it (extending it when the new end is later).
- Acknowledge: a PagerDuty `acknowledge` event with the alert's dedup_key, for every
  PagerDuty destination the ledger says was paged for the alert.

Then the message is edited (chat.update) to say who did what. A failure is shown to the
presser alone, as an ephemeral message through the press's `response_url`, and the message
claims nothing that did not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from slack_sdk.signature import Clock, SignatureVerifier
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.config.durations import format_duration
from receiver.config.rules import AlertmanagerSpec, PagerDutySpec, Rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.metrics import Metrics
from receiver.models import Alert, DedupReason, Notification, format_time
from receiver.notify.base import NotifyError
from receiver.notify.pagerduty.notifier import PagerDutyNotifier, dedup_key
from receiver.notify.slack.notifier import (
    ACKNOWLEDGE_ACTION,
    ACKNOWLEDGE_STATUS_BLOCK_ID,
    SILENCE_ACTION,
    SILENCE_STATUS_BLOCK_ID,
    ActionValue,
    Buttons,
    SlackBotNotifier,
    annotate,
    escape,
    labels_digest,
    mrkdwn_link,
    slack_date,
)
from receiver.routing.routes import route_alert
from receiver.store.base import Store, StoreError

if TYPE_CHECKING:
    from receiver.server import Service

log = logging.getLogger("alert_router.actions")

ACTIONS_PATH = "/slack/actions"
SIGNING_SECRET = "slack-signing-secret"  # noqa: S105 (a key name, not a secret)
# A press carries the whole message back, form-encoded: a few KiB usually, and about 75 KB
# for the largest message we render (50 blocks of escaped text, five 2000-character button
# values). Four times that is not Slack; it is refused before anything else is read.
MAX_BODY_BYTES = 256 * 1024
# Slack: "requests with a timestamp more than five minutes from local time" are replays.
MAX_CLOCK_SKEW = 5 * 60.0
# Slack: the request must be answered within 3 seconds, or the user sees an error.
ANSWER_WITHIN = 2.5
SLACK_TIMEOUT = 2.0
PAGERDUTY_TIMEOUT = 2.0
# A second press within this much of the first end is the same silence, not an extension.
SAME_SILENCE_GRACE = 60.0

_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
_SEEN_LIMIT = 10_000


class _Failed(Exception):
    """An action that did not happen; the text is shown to the presser (no secrets)."""


@dataclass(frozen=True, slots=True)
class Press:
    """One button press, from a verified block_actions payload."""

    action: str  # "silence" or "acknowledge"
    seconds: float  # how long to silence (silence only)
    value: ActionValue
    user_id: str
    user_name: str
    channel: str
    ts: str
    message: Mapping[str, Any] | None
    response_url: str
    retry: int

    @property
    def who(self) -> str:
        """The presser in mrkdwn: a mention Slack shows as their name."""
        if _SLACK_USER_ID.match(self.user_id):
            return f"<@{self.user_id}>"
        return escape(self.user_name or self.user_id or "someone")

    @property
    def created_by(self) -> str:
        """The presser for Alertmanager's createdBy: their Slack name, else their id."""
        return self.user_name or self.user_id or "slack"


def slack_buttons(rules: Rules, destination: str) -> Buttons | None:
    """The buttons of a Slack destination's firing messages, or None for no buttons.

    Silence buttons need `alertmanager.url` in the rules. Acknowledge shows when the
    alert is routed to a PagerDuty destination as well: the rules are asked again with the
    notification's labels and cost context, which is what the pipeline routed it with.
    """
    spec = rules.destinations[destination].slack
    if spec is None or not spec.buttons_on:
        return None
    silences = spec.silence_buttons if rules.spec.alertmanager is not None else ()
    pagerduty = frozenset(n for n, d in rules.destinations.items() if d.pagerduty is not None)

    def routed_to_pagerduty(notification: Notification) -> Sequence[str]:
        if not pagerduty:
            return ()
        alert = notification.alert
        targets = route_alert(rules, alert.labels, notification.context.numbers())
        return [t.destination for t in targets if t.destination in pagerduty]

    if not silences and not pagerduty:
        return None
    return Buttons(silences=silences, pagerduty=routed_to_pagerduty)


def actions_route(service: Service) -> Route:
    """`POST /slack/actions` for a Service, wired from its parts."""
    actions = SlackActions(
        secrets=service.secrets,
        store=service.store,
        rules=lambda: service.holder.rules,
        metrics=service.metrics,
        settings=service.settings,
        http=service.http,
        clock=service.clock,
    )
    # At shutdown, presses being handled finish before the store and clients close.
    service.closers.append(actions.aclose)
    return Route(ACTIONS_PATH, actions.endpoint, methods=["POST"])


class SlackActions:
    """The interactivity endpoint and what a press does."""

    def __init__(
        self,
        *,
        secrets: SecretStore,
        store: Store,
        rules: Callable[[], Rules],
        metrics: Metrics,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        answer_within: float = ANSWER_WITHIN,
    ) -> None:
        self._secrets = secrets
        self._store = store
        self._rules = rules
        self._metrics = metrics
        self._settings = settings
        self._http = http
        self._clock = clock
        self._answer_within = answer_within
        self._seen: dict[str, float] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    async def endpoint(self, request: Request) -> Response:
        try:
            body = await _read_limited(request, MAX_BODY_BYTES)
        except _TooLarge:
            self._rejected("malformed", f"body over {MAX_BODY_BYTES} bytes")
            return _json(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
        problem = self._unverified(body, request.headers)
        if problem is not None:
            self._rejected("unauthorized", problem)
            return _json(401, {"error": problem})
        try:
            press = _parse(body, request.headers)
        except ValueError as exc:
            self._rejected("malformed", str(exc))
            return _json(400, {"error": str(exc)})
        if press is None:
            # Another kind of interaction (a shortcut, a modal): nothing of ours.
            return Response(status_code=200)
        task = asyncio.create_task(self._act(press), name=f"slack-action:{press.action}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Done in time: Slack's answer follows the work. Not done: Slack gets its answer
        # now, and the work still edits the message or tells the user when it ends.
        await asyncio.wait({task}, timeout=self._answer_within)
        return Response(status_code=200)

    async def aclose(self) -> None:
        """Wait for presses still being handled (each is bounded by its timeouts)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- verification ----------------------------------------------------------------

    def _unverified(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the request is not a fresh one signed by Slack, or None when it is."""
        secret = self._secrets.get(SIGNING_SECRET)
        if secret is None:
            log.error(
                "slack action refused: secret %r is missing, so no request can be verified",
                SIGNING_SECRET,
            )
            return "interactivity is not configured (no signing secret)"
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
        try:
            sent = int(timestamp)
        except ValueError:
            return "X-Slack-Request-Timestamp is not a Unix time"
        now = self._clock()
        if abs(now - sent) > MAX_CLOCK_SKEW:
            return "request timestamp more than five minutes away (replay?)"
        verifier = SignatureVerifier(secret.reveal(), clock=_Clock(self._clock))
        try:
            valid = verifier.is_valid(body, timestamp, signature)
        except (TypeError, ValueError):
            # Non-ASCII signature (compare_digest) or a body that is not UTF-8.
            valid = False
        if not valid:
            return "bad signature"
        self._seen = {s: until for s, until in self._seen.items() if until > now}
        if signature in self._seen:
            return "request already received (replay)"
        if len(self._seen) < _SEEN_LIMIT:
            self._seen[signature] = sent + MAX_CLOCK_SKEW
        return None

    def _rejected(self, outcome: str, reason: str) -> None:
        self._metrics.slack_actions.labels("unknown", outcome).inc()
        log.warning("slack action request rejected", extra={"reason": reason})

    # -- acting ----------------------------------------------------------------------

    async def _act(self, press: Press) -> None:
        try:
            if press.action == "silence":
                outcome = await self._silence(press)
            else:
                outcome = await self._acknowledge(press)
        except _Failed as exc:
            outcome = "failure"
            self._log(press, outcome, error=str(exc))
            await self._tell(press, f":warning: {exc}")
        except Exception as exc:
            outcome = "failure"
            log.exception("slack action failed", extra=self._fields(press))
            await self._tell(
                press, f":warning: The {press.action} failed ({type(exc).__name__}); see the logs."
            )
        self._metrics.slack_actions.labels(press.action, outcome).inc()

    async def _silence(self, press: Press) -> str:
        rules = self._rules()
        spec = rules.spec.alertmanager
        if spec is None:
            raise _Failed("No silence: the router's rules name no Alertmanager (alertmanager.url).")
        value = press.value
        async with self._client() as http:
            am = _Alertmanager(http, spec)
            labels = value.labels
            if labels is None:
                labels = await am.labels_of(value)
            marker = f"[alert-router slack:{press.channel}/{press.ts}]"
            now = datetime.fromtimestamp(self._clock(), UTC)
            ends = now + timedelta(seconds=press.seconds)
            comment = (
                f"Silenced from Slack by {press.created_by} ({press.user_id}) for "
                f"{format_duration(press.seconds)}: {value.alertname or labels.get('alertname')}"
                f" {marker}"
            )
            async with self._lock(press):
                existing = await am.find(labels, marker)
                if existing is not None and existing.ends >= ends - timedelta(
                    seconds=SAME_SILENCE_GRACE
                ):
                    outcome, silence = "already_done", existing
                elif existing is not None:
                    outcome = "success"
                    silence = await am.extend(existing, ends, press.created_by, comment)
                else:
                    outcome = "success"
                    silence = await am.create(labels, now, ends, press.created_by, comment)
                link_base = value.external_url or spec.url
                url = f"{link_base.rstrip('/')}/#/silences/{silence.id}"
                line = (
                    f":no_bell: *Silenced* by {press.who} until {slack_date(silence.ends)}"
                    f" · silence {mrkdwn_link(url, silence.id)}"
                )
                edited = await self._edit(press, SILENCE_STATUS_BLOCK_ID, line, ())
        self._log(press, outcome, silence_id=silence.id, until=format_time(silence.ends))
        done = f"Silenced until {slack_date(silence.ends)}: silence {mrkdwn_link(url, silence.id)}"
        if outcome == "already_done" and press.retry == 0:
            await self._tell(press, f"Already silenced from this message. {done}")
        if edited is not None:
            await self._tell(press, f"{done}, but {edited}")
        return outcome

    async def _acknowledge(self, press: Press) -> str:
        rules = self._rules()
        value = press.value
        paged: list[tuple[str, PagerDutySpec]] = []
        problems: list[str] = []
        for name in value.pagerduty:
            spec = rules.destinations.get(name)
            if spec is None or spec.pagerduty is None:
                problems.append(f"PagerDuty destination {name} is no longer in the rules")
                continue
            try:
                entry = await self._store.ledger_entry(name, value.episode)
            except StoreError as exc:
                raise _Failed(f"Nothing acknowledged: the router's store failed ({exc}).") from None
            # The ledger says what PagerDuty was sent: acknowledging an alert it never got
            # (or that is closed) would claim something that did not happen.
            if entry is None or entry.firing_at is None:
                problems.append(f"{name} has not been paged for this alert (yet)")
            elif entry.resolved_at is not None:
                problems.append(f"the alert is already resolved in {name}")
            else:
                paged.append((name, spec.pagerduty))
        if not value.pagerduty:
            problems.append("the button names no PagerDuty destination")
        alert = Alert(
            fingerprint=value.fingerprint,
            status="firing",
            labels=dict(value.labels or {"alertname": value.alertname}),
            annotations={},
            starts_at=value.starts_at,
        )
        done: list[str] = []
        for name, pagerduty in paged:
            notifier = _Acknowledger(
                name,
                self._secrets.source(pagerduty.routing_key.secret),
                events_url=self._settings.pagerduty_events_url,
                timeout=PAGERDUTY_TIMEOUT,
            )
            try:
                await notifier.notify([Notification(alert, name, "slack", DedupReason.FIRST)])
            except NotifyError as exc:
                problems.append(f"{name}: {exc}")
            else:
                done.append(name)
            finally:
                notifier.close()
        if not done:
            raise _Failed("Nothing acknowledged: " + "; ".join(problems) + ".")
        where = ", ".join(escape(name) for name in done)
        now = datetime.fromtimestamp(self._clock(), UTC)
        line = (
            f":raising_hand: *Acknowledged* in PagerDuty ({where}) by {press.who} {slack_date(now)}"
        )
        # The button goes once every destination took the acknowledge.
        remove = (ACKNOWLEDGE_ACTION,) if not problems else ()
        async with self._lock(press):
            edited = await self._edit(press, ACKNOWLEDGE_STATUS_BLOCK_ID, line, remove)
        self._log(press, "success", pagerduty=done, problems=problems, dedup_key=dedup_key(alert))
        if problems:
            await self._tell(
                press, f":warning: Acknowledged in {where}, but not: " + "; ".join(problems) + "."
            )
        if edited is not None:
            await self._tell(press, f"Acknowledged in {where}, but {edited}")
        return "success"

    async def _edit(
        self, press: Press, status_block: str, line: str, remove: Sequence[str]
    ) -> str | None:
        """Put `line` on the message; None when done, else why not (for the user)."""
        if press.message is None:
            return "the message could not be updated (Slack sent no message with the press)."
        value = press.value
        try:
            entry = await self._store.ledger_entry(value.destination, value.episode)
        except StoreError as exc:
            log.warning("ledger unreadable; editing the message anyway", extra={"error": str(exc)})
            entry = None
        if entry is not None and entry.resolved_at is not None:
            # The resolve edited the message meanwhile; do not bring the firing one back.
            return "the message was left as it is: the alert has resolved."
        spec = self._rules().destinations.get(value.destination)
        if spec is None or spec.slack is None or spec.slack.token is None:
            return f"the message could not be updated: no bot destination {value.destination}."
        assert spec.slack.channel is not None  # rules validation guarantees it
        editor = SlackBotNotifier(
            value.destination,
            self._secrets.source(spec.slack.token.secret),
            spec.slack.channel,
            api_url=self._settings.slack_api_url,
            timeout=SLACK_TIMEOUT,
        )
        body = annotate(press.message, status_block=status_block, text=line, remove_actions=remove)
        try:
            await editor.edit(press.channel, press.ts, body)
        except NotifyError as exc:
            log.warning(
                "slack action done, but the message could not be updated",
                extra={**self._fields(press), "error": str(exc)},
            )
            return f"the message could not be updated ({exc})."
        finally:
            editor.close()
        return None

    async def _tell(self, press: Press, text: str) -> None:
        """An ephemeral message to the presser alone (Slack: response_url, 30 minutes)."""
        body = {"response_type": "ephemeral", "replace_original": False, "text": text}
        try:
            async with self._client() as http:
                response = await http.post(press.response_url, json=body, timeout=SLACK_TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning(
                "cannot tell the user through response_url",
                extra={**self._fields(press), "error": type(exc).__name__, "text": text},
            )
            return
        if not response.is_success:
            log.warning(
                "response_url refused the message",
                extra={**self._fields(press), "status": response.status_code, "text": text},
            )

    # -- plumbing --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http is not None:
            yield self._http
            return
        async with httpx.AsyncClient() as client:
            yield client

    @contextlib.asynccontextmanager
    async def _lock(self, press: Press) -> AsyncIterator[None]:
        """One press at a time per message and alert (a double click, a Slack retry)."""
        key = f"{press.channel}/{press.ts}/{press.value.fingerprint}"
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield

    def _fields(self, press: Press) -> dict[str, Any]:
        value = press.value
        return {
            "action": press.action,
            "user": press.created_by,
            "user_id": press.user_id,
            "alertname": value.alertname,
            "fingerprint": value.fingerprint,
            "episode": value.episode,
            "destination": value.destination,
            "channel": press.channel,
            "ts": press.ts,
            "retry": press.retry,
        }

    def _log(self, press: Press, outcome: str, **extra: Any) -> None:
        fields = {**self._fields(press), "outcome": outcome, **extra}
        if press.action == "silence":
            fields["duration"] = format_duration(press.seconds)
        if outcome == "failure":
            log.warning("slack action failed", extra=fields)
        else:
            log.info("slack action", extra=fields)


class _Acknowledger(PagerDutyNotifier):
    """PagerDuty's `acknowledge` for a notification's alert, sent by the notifier's client
    with its error mapping (4xx final, 429/5xx worth another press, keys redacted)."""

    def _event(self, notification: Notification, routing_key: str) -> dict[str, Any]:
        # PagerDuty: acknowledge takes routing_key, event_action and dedup_key only.
        return {
            "routing_key": routing_key,
            "event_action": "acknowledge",
            "dedup_key": dedup_key(notification.alert),
        }


# -- Alertmanager ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Silence:
    id: str
    starts: datetime
    ends: datetime
    matchers: list[dict[str, Any]]


class _Alertmanager:
    """The few calls of Alertmanager's API v2 a silence button needs."""

    def __init__(self, http: httpx.AsyncClient, spec: AlertmanagerSpec) -> None:
        self._http = http
        self._base = spec.url.rstrip("/")
        self._timeout = spec.timeout

    async def labels_of(self, value: ActionValue) -> Mapping[str, str]:
        """The labels of the alert with the button's fingerprint, when they were too long
        to travel in the button: Alertmanager still holds a firing alert."""
        params = {"filter": _filter(value.alertname)} if value.alertname else {}
        found = await self._call("GET", "/api/v2/alerts", params=params)
        for alert in found if isinstance(found, list) else []:
            labels = alert.get("labels") if isinstance(alert, dict) else None
            if alert.get("fingerprint") == value.fingerprint and isinstance(labels, dict):
                if labels_digest(labels) != value.digest:
                    break
                return {str(k): str(v) for k, v in labels.items()}
        raise _Failed(
            "No silence: Alertmanager no longer holds this alert, and its labels were too "
            "long to travel in the button. Silence it in Alertmanager."
        )

    async def find(self, labels: Mapping[str, str], marker: str) -> _Silence | None:
        """An active (or pending) silence from this message with exactly these matchers."""
        params = {"filter": _filter(labels["alertname"])} if "alertname" in labels else {}
        found = await self._call("GET", "/api/v2/silences", params=params)
        wanted = _matcher_set(_matchers(labels))
        for item in found if isinstance(found, list) else []:
            if not isinstance(item, dict):
                continue
            state = (item.get("status") or {}).get("state")
            if state not in ("active", "pending") or marker not in str(item.get("comment")):
                continue
            matchers = item.get("matchers")
            if not isinstance(matchers, list) or _matcher_set(matchers) != wanted:
                continue
            with contextlib.suppress(KeyError, TypeError, ValueError):
                return _Silence(
                    id=str(item["id"]),
                    starts=_time(item["startsAt"]),
                    ends=_time(item["endsAt"]),
                    matchers=matchers,
                )
        return None

    async def create(
        self,
        labels: Mapping[str, str],
        starts: datetime,
        ends: datetime,
        created_by: str,
        comment: str,
    ) -> _Silence:
        matchers = _matchers(labels)
        body = {
            "matchers": matchers,
            "startsAt": format_time(starts),
            "endsAt": format_time(ends),
            "createdBy": created_by,
            "comment": comment,
        }
        return _Silence(await self._post(body), starts, ends, matchers)

    async def extend(
        self, silence: _Silence, ends: datetime, created_by: str, comment: str
    ) -> _Silence:
        """A later end for an active silence: Alertmanager updates it in place when the
        matchers and start are unchanged, and keeps its ID."""
        body = {
            "id": silence.id,
            "matchers": silence.matchers,
            "startsAt": format_time(silence.starts),
            "endsAt": format_time(ends),
            "createdBy": created_by,
            "comment": comment,
        }
        return _Silence(await self._post(body), silence.starts, ends, silence.matchers)

    async def _post(self, body: Mapping[str, Any]) -> str:
        answer = await self._call("POST", "/api/v2/silences", json=body)
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise _Failed("Alertmanager created no silence (its answer had no silenceID).")
        return silence_id

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self._base + path
        where = f"Alertmanager at {_display_url(self._base)}"
        try:
            response = await self._http.request(
                method, url, params=params, json=json, timeout=self._timeout
            )
        except httpx.TimeoutException:
            raise _Failed(
                f"No silence: {where} did not answer within {self._timeout:g}s."
            ) from None
        except httpx.HTTPError as exc:
            raise _Failed(
                f"No silence: {where} cannot be reached ({type(exc).__name__})."
            ) from None
        if not response.is_success:
            text = " ".join(response.text.split())[:200]
            raise _Failed(
                f"No silence: {where} answered HTTP {response.status_code} {text}".rstrip() + "."
            )
        try:
            return response.json()
        except ValueError:
            raise _Failed(f"No silence: {where} answered something other than JSON.") from None


def _matchers(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Equality matchers for every label: the silence covers this alert and no other."""
    return [
        {"name": name, "value": value, "isRegex": False, "isEqual": True}
        for name, value in sorted(labels.items())
    ]


def _matcher_set(matchers: Sequence[Any]) -> frozenset[tuple[str, str, bool, bool]]:
    found = set()
    for m in matchers:
        if isinstance(m, dict):
            # Alertmanager before 0.22 has no isEqual: every matcher was an equality.
            found.add(
                (
                    str(m.get("name")),
                    str(m.get("value")),
                    bool(m.get("isRegex")),
                    bool(m.get("isEqual", True)),
                )
            )
    return frozenset(found)


def _filter(alertname: str) -> str:
    """An Alertmanager `filter` matcher for an alert name (its quoting rules)."""
    quoted = alertname.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'alertname="{quoted}"'


def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("time without a timezone")
    return parsed.astimezone(UTC)


def _display_url(url: str) -> str:
    """`url` without credentials, query or fragment, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- the request -------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _Clock(Clock):
    """The service's clock for slack_sdk's timestamp check."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock()


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes, headers: Mapping[str, str]) -> Press | None:
    """The press in a block_actions payload; None for another kind of interaction."""
    form = urllib.parse.parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    raw = form.get("payload")
    if not raw:
        raise ValueError("no payload field in the form")
    try:
        payload = orjson.loads(raw[0])
    except orjson.JSONDecodeError:
        raise ValueError("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise ValueError("block_actions payload without actions")
    action = actions[0]
    action_id = str(action.get("action_id") or "")
    seconds = 0.0
    if action_id == ACKNOWLEDGE_ACTION:
        kind = "acknowledge"
    elif action_id.startswith(SILENCE_ACTION):
        kind = "silence"
        try:
            seconds = float(action_id.removeprefix(SILENCE_ACTION))
        except ValueError:
            raise ValueError(f"unknown action {action_id[:100]!r}") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"unknown action {action_id[:100]!r}")
    else:
        raise ValueError(f"unknown action {action_id[:100]!r}")
    try:
        value = ActionValue.decode(str(action.get("value") or ""))
    except ValueError as exc:
        raise ValueError(f"button value: {exc}") from None
    user = _object(payload, "user") or {}
    container = _object(payload, "container") or {}
    message = _object(payload, "message")
    channel_id = str(
        container.get("channel_id") or (_object(payload, "channel") or {}).get("id") or ""
    )
    ts = str(container.get("message_ts") or (message or {}).get("ts") or "")
    if not channel_id or not ts:
        raise ValueError("block_actions payload without the message's channel and ts")
    response_url = str(payload.get("response_url") or "")
    if not response_url.startswith(("https://", "http://")):
        raise ValueError("block_actions payload without response_url")
    retry = headers.get("x-slack-retry-num", "0")
    return Press(
        action=kind,
        seconds=seconds,
        value=value,
        user_id=str(user.get("id") or ""),
        user_name=str(user.get("username") or user.get("name") or ""),
        channel=channel_id,
        ts=ts,
        message=message,
        response_url=response_url,
        retry=int(retry) if retry.isdigit() else 0,
    )


def _object(payload: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    found = payload.get(key)
    return found if isinstance(found, dict) else None


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")
