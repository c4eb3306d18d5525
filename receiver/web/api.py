"""The JSON API under /api/v1: the recent episodes, one alert's timelines, the dead letters
and their retry, the status. Read-only but for the retry, which needs the CSRF token and a
same-origin request (receiver.web.csrf)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.history.query import find_episodes
from receiver.history.summary import summarize
from receiver.web.auth import user_of
from receiver.web.csrf import CSRF_HEADER, csrf_token, write_refusal
from receiver.web.deps import WebDeps
from receiver.web.message import episode_links
from receiver.web.params import alert_query
from receiver.web.present import dead_letter_json, event_json, summary_json
from receiver.web.retry import retry_dead_letter
from receiver.web.status import read_status, status_json

log = logging.getLogger("alert_router.web")


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


class Api:
    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps

    def routes(self) -> list[Route]:
        return [
            Route("/alerts", self.alerts, methods=["GET"]),
            Route("/alerts/{fingerprint}", self.alert, methods=["GET"]),
            Route("/dead-letters", self.dead_letters, methods=["GET"]),
            Route("/dead-letters/{id}/retry", self.retry, methods=["POST"]),
            Route("/status", self.status, methods=["GET"]),
        ]

    async def alerts(self, request: Request) -> Response:
        query = alert_query(request.query_params, self.deps.clock())
        if query.problems:
            return _json({"error": "; ".join(query.problems), "problems": query.problems}, 400)
        summaries = await find_episodes(
            self.deps.store,
            matchers=query.matchers,
            status=query.status,
            destination=query.destination,
            since=query.since,
            limit=query.limit,
        )
        return _json({"alerts": [summary_json(s) for s in summaries], "count": len(summaries)})

    async def alert(self, request: Request) -> Response:
        fingerprint = request.path_params["fingerprint"]
        timelines = await self.deps.store.alert_timelines(fingerprint)
        if not timelines:
            return _json({"error": f"no history of alert {fingerprint!r}"}, 404)
        episodes = []
        for timeline in timelines:
            episode = summary_json(summarize(timeline))
            episode["events"] = [event_json(e) for e in timeline.events]
            episode["links"] = [
                {"label": link.label, "url": link.url, "note": link.note}
                for link in episode_links(timeline)
            ]
            episodes.append(episode)
        return _json({"fingerprint": fingerprint, "episodes": episodes})

    async def dead_letters(self, request: Request) -> Response:
        letters = await self.deps.store.dead_letters()
        return _json(
            {
                "dead_letters": [dead_letter_json(d) for d in letters],
                # For a client's retry (header X-CSRF-Token): this answer is readable only
                # with the password, and never by another origin's page.
                "csrf_token": csrf_token(request),
            }
        )

    async def retry(self, request: Request) -> Response:
        letter_id = request.path_params["id"]
        who = user_of(request)
        refusal = write_refusal(request, request.headers.get(CSRF_HEADER))
        if refusal is not None:
            log.warning(
                "dead letter retry refused",
                extra={"who": who, "what": "retry", "dead_letter": letter_id, "outcome": refusal},
            )
            return _json({"error": refusal}, 403)
        retried = await retry_dead_letter(self.deps, letter_id, who)
        if retried.outcome == "not_found":
            return _json({"error": f"no dead letter {letter_id!r}", "outcome": "not_found"}, 404)
        return _json({"id": letter_id, "outcome": retried.outcome})

    async def status(self, request: Request) -> Response:
        return _json(status_json(await read_status(self.deps, self.deps.clock())))
