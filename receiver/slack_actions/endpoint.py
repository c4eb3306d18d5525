"""`POST /slack/actions`, where the buttons of bot messages land.

Every request is verified first (receiver.slack_actions.verify); nothing is read from a
request before that, and the Alertmanager bearer token plays no part here. A press acts at
once, while Slack waits (Slack: answer within 3 seconds; what is not done by then
finishes in the background and still reports to the user): a silence
(receiver.slack_actions.silence) or an acknowledge (receiver.slack_actions.acknowledge).
Then the message is edited to say who did what (receiver.slack_actions.respond).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.asgi import BodyTooLarge, ClientDisconnected, read_body
from receiver.config.durations import format_duration
from receiver.config.rules import Rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.events import EpisodeMeta, Event, EventKind
from receiver.history.recorder import HistoryRecorder
from receiver.metrics import Metrics
from receiver.models import episode_key
from receiver.slack_actions.acknowledge import Acknowledger
from receiver.slack_actions.payload import Press, parse_press
from receiver.slack_actions.respond import Failed, Responder
from receiver.slack_actions.silence import Silencer
from receiver.slack_actions.verify import RequestVerifier
from receiver.store.base import Store

log = logging.getLogger("alert_router.slack_actions")

ACTIONS_PATH = "/slack/actions"
# The outcomes of a press that did something (kept in the alert's history).
_DONE = frozenset({"success"})
# A press carries the whole message back, form-encoded: a few KiB usually, and about 75 KB
# for the largest message we render (50 blocks of escaped text, five 2000-character button
# values). Four times that is not Slack; it is refused before anything else is read.
MAX_BODY_BYTES = 256 * 1024
# Slack: the request must be answered within 3 seconds, or the user sees an error.
ANSWER_WITHIN = 2.5


class SlackActions:
    """The interactivity endpoint and what a press does."""

    def __init__(
        self,
        *,
        secrets: SecretStore,
        store: Store,
        rules: Callable[[], Rules],
        metrics: Metrics,
        slack_api_url: str,
        pagerduty_events_url: str,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        answer_within: float = ANSWER_WITHIN,
        record: Callable[[Event, EpisodeMeta | None], None] | None = None,
    ) -> None:
        """`http` is the service's client for Alertmanager and Slack's response_url (None:
        one per press); `rules` gives the rules in force at each press; `record` keeps a
        silence or acknowledgement, with who pressed, in the alert's history."""
        self._metrics = metrics
        self._record = record
        self._clock = clock
        self._answer_within = answer_within
        self._verifier = RequestVerifier(secrets, clock)
        self._responder = Responder(
            secrets=secrets, store=store, rules=rules, slack_api_url=slack_api_url, http=http
        )
        self._silence = Silencer(rules=rules, clock=clock, responder=self._responder)
        self._acknowledge = Acknowledger(
            rules=rules,
            store=store,
            secrets=secrets,
            events_url=pagerduty_events_url,
            clock=clock,
            responder=self._responder,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def route(self) -> Route:
        return Route(ACTIONS_PATH, self.endpoint, methods=["POST"])

    async def endpoint(self, request: Request) -> Response:
        try:
            body = await read_body(
                request.receive, MAX_BODY_BYTES, request.headers.get("content-length")
            )
        except BodyTooLarge:
            self._rejected("malformed", f"body over {MAX_BODY_BYTES} bytes")
            return _json(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
        except ClientDisconnected:
            return Response(status_code=400)  # nobody is left to read it
        problem = self._verifier.problem(body, request.headers)
        if problem is not None:
            self._rejected("unauthorized", problem)
            return _json(401, {"error": problem})
        try:
            press = parse_press(body, request.headers)
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
        """Wait for presses still being handled (each is bounded by its timeouts), then
        close the connections used to edit messages."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._responder.aclose()

    def _rejected(self, outcome: str, reason: str) -> None:
        self._metrics.slack_actions.labels("unknown", outcome).inc()
        log.warning("slack action request rejected", extra={"reason": reason})

    async def _act(self, press: Press) -> None:
        flow = self._silence if press.action == "silence" else self._acknowledge
        try:
            outcome, details = await flow(press)
        except Failed as exc:
            outcome = "failure"
            self._log(press, outcome, {"error": str(exc)})
            await self._responder.tell(press, f":warning: {exc}")
        except Exception as exc:
            outcome = "failure"
            log.exception("slack action failed", extra=press.log_fields())
            await self._responder.tell(
                press, f":warning: The {press.action} failed ({type(exc).__name__}); see the logs."
            )
        else:
            self._log(press, outcome, details)
            self._remember(press, outcome, details)
        self._metrics.slack_actions.labels(press.action, outcome).inc()

    def _remember(self, press: Press, outcome: str, details: dict[str, Any]) -> None:
        """A press that did something, in the alert's history: who, and what it did."""
        if self._record is None or outcome not in _DONE:
            return
        value = press.value
        kind = EventKind.SILENCED if press.action == "silence" else EventKind.ACKNOWLEDGED
        data: dict[str, Any] = {"by": press.created_by, "outcome": outcome, **details}
        if press.action == "silence":
            data["duration"] = format_duration(press.seconds)
        else:
            data["destination"] = value.destination
        episode = episode_key(value.fingerprint, value.starts_at)
        self._record(
            Event(self._clock(), value.fingerprint, episode, kind, data, value.destination), None
        )

    def _log(self, press: Press, outcome: str, details: dict[str, Any]) -> None:
        fields = {**press.log_fields(), "outcome": outcome, **details}
        if press.action == "silence":
            fields["duration"] = format_duration(press.seconds)
        if outcome == "failure":
            log.warning("slack action failed", extra=fields)
        else:
            log.info("slack action", extra=fields)


class _RulesHolder(Protocol):
    @property
    def rules(self) -> Rules: ...


class ServiceParts(Protocol):
    """What `actions_route` takes from the service (receiver.server.Service has it all)."""

    @property
    def secrets(self) -> SecretStore: ...
    @property
    def store(self) -> Store: ...
    @property
    def holder(self) -> _RulesHolder: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def http(self) -> httpx.AsyncClient | None: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def closers(self) -> list[Callable[[], Awaitable[None]]]: ...
    @property
    def history(self) -> HistoryRecorder: ...


def actions_route(service: ServiceParts) -> Route:
    """`POST /slack/actions` for a service, wired from its parts; at shutdown, presses
    being handled finish before the store and clients close."""
    actions = SlackActions(
        secrets=service.secrets,
        store=service.store,
        rules=lambda: service.holder.rules,
        metrics=service.metrics,
        slack_api_url=service.settings.slack_api_url,
        pagerduty_events_url=service.settings.pagerduty_events_url,
        http=service.http,
        clock=service.clock,
        record=service.history.record,
    )
    service.closers.append(actions.aclose)
    return actions.route()


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")
