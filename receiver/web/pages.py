"""The web page under /ui: overview, alerts, one alert, dead letters, rules. Server-rendered
with Jinja2 (autoescaped: a label or annotation is text, never markup); plain forms, so
every page works without JavaScript."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from receiver.history.query import find_episodes
from receiver.history.summary import summarize
from receiver.history.timeline import describe
from receiver.web.auth import user_of
from receiver.web.csrf import CSRF_FIELD, csrf_token, write_refusal
from receiver.web.deps import WebDeps
from receiver.web.message import episode_alert, episode_links, rendered_messages
from receiver.web.params import STATUSES, alert_query
from receiver.web.present import ago, main_labels, utc
from receiver.web.retry import retry_dead_letter
from receiver.web.rules_view import rules_view, try_route
from receiver.web.status import read_status

log = logging.getLogger("alert_router.web")

UI = "/ui"

_FLASH = {
    "queued": ("ok", "Dead letter {id} is queued again: the next delivery round sends it."),
    "not_found": ("warn", "Dead letter {id} is no longer there: it was retried already."),
}


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("receiver.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(utc=utc, ago=ago, main_labels=main_labels, describe=describe)
    return Jinja2Templates(env=env)


class Pages:
    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps
        self.templates = _templates()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.overview, methods=["GET"]),
            Route("/alerts", self.alerts, methods=["GET"]),
            Route("/alerts/{fingerprint}", self.alert, methods=["GET"]),
            Route("/dead-letters", self.dead_letters, methods=["GET"]),
            Route("/dead-letters/{id}/retry", self.retry, methods=["POST"]),
            Route("/rules", self.rules, methods=["GET"]),
            Mount("/static", StaticFiles(packages=[("receiver.web", "static")]), name="static"),
        ]

    def _page(
        self, request: Request, name: str, page: str, status: int = 200, **values: Any
    ) -> Response:
        context = {"page": page, "user": user_of(request), "now": self.deps.clock(), "flash": None}
        context.update(values)
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    async def overview(self, request: Request) -> Response:
        state = await read_status(self.deps, self.deps.clock())
        return self._page(request, "overview.html", "overview", state=state)

    async def alerts(self, request: Request) -> Response:
        query = alert_query(request.query_params, self.deps.clock())
        summaries = []
        if not query.problems:
            summaries = await find_episodes(
                self.deps.store,
                matchers=query.matchers,
                status=query.status,
                destination=query.destination,
                since=query.since,
                limit=query.limit,
            )
        known = set(self.deps.rules().destinations) if self.deps.holder.loaded else set()
        for summary in summaries:
            known.update(o.destination for o in summary.outcomes)
        return self._page(
            request,
            "alerts.html",
            "alerts",
            status=400 if query.problems else 200,
            query=query,
            statuses=STATUSES,
            destinations=sorted(known),
            summaries=summaries,
        )

    async def alert(self, request: Request) -> Response:
        fingerprint = request.path_params["fingerprint"]
        timelines = await self.deps.store.alert_timelines(fingerprint)
        if not timelines:
            return self._page(
                request,
                "not_found.html",
                "alerts",
                status=404,
                what=f"No history of alert {fingerprint}.",
            )
        rules = self.deps.rules() if self.deps.holder.loaded else None
        episodes = []
        for timeline in timelines:
            summary = summarize(timeline)
            alert = episode_alert(timeline)
            episodes.append(
                {
                    "summary": summary,
                    "events": timeline.events,
                    "annotations": dict(alert.annotations) if alert is not None else {},
                    "messages": rendered_messages(rules, timeline, summary) if rules else [],
                    "links": episode_links(timeline),
                }
            )
        return self._page(
            request,
            "alert.html",
            "alerts",
            fingerprint=fingerprint,
            episodes=episodes,
            meta=timelines[0].meta,
        )

    async def dead_letters(self, request: Request) -> Response:
        letters = await self.deps.store.dead_letters()
        flash = None
        outcome = request.query_params.get("outcome", "")
        if outcome in _FLASH:
            kind, text = _FLASH[outcome]
            flash = {"kind": kind, "text": text.format(id=request.query_params.get("id", ""))}
        return self._page(
            request,
            "dead_letters.html",
            "dead-letters",
            letters=letters,
            flash=flash,
            csrf_field=CSRF_FIELD,
            csrf_token=csrf_token(request),
        )

    async def retry(self, request: Request) -> Response:
        letter_id = request.path_params["id"]
        who = user_of(request)
        form = await request.form()
        token = form.get(CSRF_FIELD)
        refusal = write_refusal(request, token if isinstance(token, str) else None)
        if refusal is not None:
            log.warning(
                "dead letter retry refused",
                extra={"who": who, "what": "retry", "dead_letter": letter_id, "outcome": refusal},
            )
            return self._page(request, "refused.html", "dead-letters", status=403, reason=refusal)
        retried = await retry_dead_letter(self.deps, letter_id, who)
        query = urlencode({"outcome": retried.outcome, "id": letter_id})
        return RedirectResponse(f"{UI}/dead-letters?{query}", status_code=303)

    async def rules(self, request: Request) -> Response:
        if not self.deps.holder.loaded:
            return self._page(
                request, "not_found.html", "rules", status=503, what="The rules are not loaded yet."
            )
        rules = self.deps.rules()
        params = request.query_params
        tested = None
        if "labels" in params:
            tested = try_route(rules, params.get("labels", ""), params.get("context", ""))
        return self._page(
            request,
            "rules.html",
            "rules",
            view=rules_view(rules),
            labels=params.get("labels", ""),
            context_text=params.get("context", ""),
            tested=tested,
        )
