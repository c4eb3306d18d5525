"""Access: no `ui-password` key -> every path is a 404; a wrong or missing credential ->
401 with a Basic challenge; the right one -> the page. Every answer carries the security
headers, refusals included."""

from __future__ import annotations

import httpx
import pytest

from receiver.web.headers import SECURITY_HEADERS
from tests.web.conftest import PASSWORD, Web, basic

GETS = [
    "/ui",
    "/ui/",
    "/ui/alerts",
    "/ui/alerts?filter=alertname%3D%22x%22",
    "/ui/alerts/0123abcd",
    "/ui/dead-letters",
    "/ui/rules",
    "/ui/rules?labels=alertname%3DX",
    "/ui/static/style.css",
    "/ui/no-such-page",
    "/api/v1/alerts",
    "/api/v1/alerts/0123abcd",
    "/api/v1/dead-letters",
    "/api/v1/status",
    "/api/v1/no-such-thing",
]
POSTS = ["/ui/dead-letters/1/retry", "/api/v1/dead-letters/1/retry"]
ALL = [("GET", p) for p in GETS] + [("POST", p) for p in POSTS]

# What the signed-in user gets on each GET: the pages, or a 404 for what does not exist.
SIGNED_IN = {
    "/ui": 308,
    "/ui/alerts/0123abcd": 404,
    "/ui/no-such-page": 404,
    "/api/v1/alerts/0123abcd": 404,
    "/api/v1/no-such-thing": 404,
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)


@pytest.mark.parametrize(("method", "path"), ALL)
async def test_without_the_key_every_path_is_not_found(web: Web, method: str, path: str) -> None:
    web.set_password(None)
    for client in (web.client, web.anonymous):
        response = await client.request(method, path)
        assert response.status_code == 404, path
        assert "WWW-Authenticate" not in response.headers
        assert_security_headers(response)


@pytest.mark.parametrize(("method", "path"), ALL)
async def test_a_wrong_or_missing_password_is_unauthorized(
    web: Web, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": basic("oncall-amy", "wrong")},
        {"Authorization": basic("oncall-amy", PASSWORD + "x")},
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Basic not-base64!"},
    ):
        response = await web.anonymous.request(method, path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["WWW-Authenticate"] == 'Basic realm="alert-router"'
        assert_security_headers(response)


@pytest.mark.parametrize("path", GETS)
async def test_the_password_opens_every_page(web: Web, path: str) -> None:
    response = await web.client.get(path)
    assert response.status_code == SIGNED_IN.get(path.split("?")[0], 200), path
    assert_security_headers(response)


async def test_any_user_name_is_accepted(web: Web) -> None:
    for user in ("", "someone else", "ünïcode"):
        response = await web.anonymous.get(
            "/api/v1/status", headers={"Authorization": basic(user, PASSWORD)}
        )
        assert response.status_code == 200, user


async def test_a_rotated_password_applies_at_once(web: Web) -> None:
    assert (await web.client.get("/api/v1/status")).status_code == 200
    web.set_password("the new one")
    assert (await web.client.get("/api/v1/status")).status_code == 401
    response = await web.anonymous.get(
        "/api/v1/status", headers={"Authorization": basic("amy", "the new one")}
    )
    assert response.status_code == 200


async def test_the_stylesheet_is_served_as_css(web: Web) -> None:
    response = await web.client.get("/ui/static/style.css")
    assert response.headers["content-type"].startswith("text/css")
    assert ".badge" in response.text


async def test_pages_carry_no_inline_script_or_style(web: Web) -> None:
    for path in ("/ui/", "/ui/alerts", "/ui/dead-letters", "/ui/rules?labels=a%3Db"):
        html = (await web.client.get(path)).text
        assert "<script" not in html
        assert "style=" not in html
        assert "<style" not in html
        assert 'href="http' not in html  # nothing fetched from outside
