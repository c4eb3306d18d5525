"""The ceiling: a bare Starlette endpoint that only parses the webhook JSON and answers 200.

`python -m bench.bare PORT` serves it with uvicorn as alert-router is served (one worker, the
same loop and HTTP implementations, no access log).
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def alerts(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    return Response(
        orjson.dumps({"accepted": len(payload["alerts"])}), media_type="application/json"
    )


def app() -> Starlette:
    return Starlette(routes=[Route("/alerts", alerts, methods=["POST"])])


def main(argv: list[str]) -> int:
    uvicorn.run(
        app(),
        host="127.0.0.1",
        port=int(argv[0]),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
