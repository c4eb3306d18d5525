"""The page in a real headless Chromium (Debian's chromium and chromium-driver, through
selenium), against the real service: webhooks in, the pipeline delivering to a fake Slack,
the page showing what happened. One browser and one service for the module.

Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from receiver.events import EventKind, Timeline
from receiver.models import labels_fingerprint
from receiver.samples import webhook
from receiver.server import Service
from tests.fakes.slack import SlackWebhookServer, webhook_error
from tests.service import FAST, TOKEN, ServerThread, make_settings, start_service
from tests.support import IN_CI, wait_until

PASSWORD = "browser-test-password"
SHOTS = Path("test-artifacts/screenshots")
# The onerror of this label would set the title: it must never run.
XSS_TITLE = "<img src=x onerror=\"document.title='pwned'\">"
XSS_ALERT = "<img src=x onerror=alert(1)>"

RULES = """
destinations:
  finops-slack: {slack: {webhook_url: {secret: slack-webhook-url}}}
routes:
  - name: gpu-costs
    matchers: ['alertname=~"HighGPUCost|IdleGPU"']
    to: [finops-slack]
default: finops-slack
"""

GPU = {"alertname": "HighGPUCost", "service": "training", "severity": "critical"}
IDLE = {"alertname": "IdleGPU", "service": XSS_TITLE, "team": XSS_ALERT}
BUDGET = {"alertname": "BudgetBurn", "service": "search", "severity": "warning"}


def _require(name: str) -> None:
    if shutil.which(name) is None:
        message = f"{name} is not installed (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Site:
    server: ServerThread
    service: Service
    slack: SlackWebhookServer
    url: str
    starts: datetime

    def fingerprint(self, labels: dict[str, str]) -> str:
        return labels_fingerprint(labels)

    def timelines(self, labels: dict[str, str]) -> list[Timeline]:
        store = self.service.store
        found: list[Timeline] = self.server.call(
            lambda: store.alert_timelines(self.fingerprint(labels))
        )
        return found

    def dead_letters(self) -> list[Any]:
        store = self.service.store
        letters: list[Any] = self.server.call(store.dead_letters)
        return letters


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser")
    slack = SlackWebhookServer().start()
    rules = tmp / "routes.yaml"
    rules.write_text(RULES)
    settings = make_settings(tmp, rules)
    (settings.secrets_dir / "slack-webhook-url").write_text(slack.url)
    (settings.secrets_dir / "ui-password").write_text(PASSWORD)
    server, _ = start_service(settings, dry_run=False, tuning=FAST)
    service = server.service
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=7)
    site = Site(server, service, slack, server.url, starts)
    try:
        _deliver_seed_alerts(site)
        yield site
    finally:
        server.stop()
        slack.stop()


def _post(site: Site, labels: dict[str, str]) -> None:
    body = webhook(
        [(labels, {"summary": f"{labels['alertname']} on {labels['service']}"})],
        starts_at=site.starts,
    )
    response = httpx.post(
        f"{site.url}/alerts", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text


def _deliver_seed_alerts(site: Site) -> None:
    """The real chain: webhooks in, Slack answers the first try of the GPU alert with a 500
    (retried, then delivered) and refuses the budget alert for good (a dead letter)."""
    slack = site.slack
    slack.script(webhook_error(500, "internal_error"))
    _post(site, GPU)
    wait_until(lambda: len(slack.delivered) == 1, timeout=20)
    _post(site, IDLE)
    wait_until(lambda: len(slack.delivered) == 2, timeout=20)
    slack.script(webhook_error(404, "no_service"))
    _post(site, BUDGET)
    wait_until(lambda: len(site.dead_letters()) == 1, timeout=20)
    # What the pipeline recorded is written by the recorder's next batch.
    expected = {"GPU": EventKind.DELIVERED, "IDLE": EventKind.DELIVERED}
    for name, labels in (("GPU", GPU), ("IDLE", IDLE), ("BUDGET", BUDGET)):
        last = expected.get(name, EventKind.DEAD_LETTER)
        wait_until(partial(_recorded, site, labels, last), timeout=20)


def _recorded(site: Site, labels: dict[str, str], kind: EventKind) -> bool:
    return any(e.kind is kind for t in site.timelines(labels) for e in t.events)


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    _require("chromium")
    _require("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = cast(str, shutil.which("chromium"))
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=DriverService(executable_path=cast(str, shutil.which("chromedriver"))),
        options=options,
    )
    credential = base64.b64encode(f"oncall-amy:{PASSWORD}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credential}"}}
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str, height: int | None = None) -> None:
    if height is not None:
        driver.set_window_size(1400, height)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def texts(driver: Any, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def test_the_pages_render_after_the_chain_delivered(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{site.url}/ui/")
    assert browser.title == "Overview · alert-router"
    banner = browser.find_element(By.CSS_SELECTOR, ".banner")
    assert "bad" in banner.get_attribute("class")
    assert "1 dead letter waiting" in banner.text
    shot(browser, "overview")
    browser.get(f"{site.url}/ui/alerts")
    rows = texts(browser, "table.episodes tbody tr")
    assert any("HighGPUCost" in row and "delivered" in row for row in rows), rows
    assert any("IdleGPU" in row for row in rows), rows
    shot(browser, "alerts")
    browser.get(f"{site.url}/ui/rules")
    assert "slack-webhook-url" in browser.find_element(By.TAG_NAME, "main").text
    browser.find_element(By.NAME, "labels").send_keys("alertname=HighGPUCost\nservice=x")
    _submit(browser, ".tester button")
    answer = browser.find_element(By.CSS_SELECTOR, "pre.answer").text
    assert answer.splitlines()[0] == "finops-slack"
    shot(browser, "rules")


def test_the_filter_narrows_the_list(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{site.url}/ui/alerts")
    before = texts(browser, "a.alertname")
    assert {"HighGPUCost", "IdleGPU"} <= set(before)
    box = browser.find_element(By.NAME, "filter")
    box.send_keys('alertname="HighGPUCost"')
    _submit(browser, "form.filters button")
    assert "filter=" in browser.current_url
    assert texts(browser, "a.alertname") == ["HighGPUCost"]
    shot(browser, "alerts-filtered")


def test_the_timeline_shows_the_route_the_reason_and_the_attempt(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{site.url}/ui/alerts/{site.fingerprint(GPU)}")
    kinds = texts(browser, "ol.timeline .kind")
    lines = " | ".join(texts(browser, "ol.timeline li"))
    assert "ROUTED" in kinds and "DEDUP" in kinds and "ATTEMPT" in kinds, kinds
    assert "DELIVERED" in kinds
    assert "gpu-costs" in lines
    assert "first_notification" in lines
    assert "503" in lines or "500" in lines
    browser.find_element(By.CSS_SELECTOR, "details.message summary").click()
    assert "FIRING: HighGPUCost" in browser.find_element(By.CSS_SELECTOR, "details pre").text
    shot(browser, "timeline", height=1350)


def test_a_label_with_markup_runs_nothing(site: Site, browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    for path in ("/ui/alerts", f"/ui/alerts/{site.fingerprint(IDLE)}"):
        browser.get(site.url + path)
        assert "pwned" not in browser.title
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 (raises when no alert is open)
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
        assert XSS_TITLE in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "escaped-label")


def test_a_post_without_the_csrf_token_changes_nothing(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    [letter] = site.dead_letters()
    browser.get(f"{site.url}/ui/dead-letters")
    form = browser.find_element(By.CSS_SELECTOR, "tr.dead-letter form")
    browser.execute_script("arguments[0].querySelector('input[name=csrf_token]').remove()", form)
    form.find_element(By.CSS_SELECTOR, "button").click()
    banner = _text_once(browser, ".banner", "Nothing was changed")
    assert "Nothing was changed: the CSRF token is missing" in banner
    assert [d.id for d in site.dead_letters()] == [letter.id]
    shot(browser, "csrf-refused")


def test_the_retry_button_delivers_the_dead_letter(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    [letter] = site.dead_letters()
    assert letter.alertname == "BudgetBurn"
    browser.get(f"{site.url}/ui/dead-letters")
    shot(browser, "dead-letters")
    browser.find_element(By.CSS_SELECTOR, "tr.dead-letter button.retry").click()
    flash = _text_once(browser, ".flash", "queued again")
    assert f"Dead letter {letter.id} is queued again" in flash
    wait_until(lambda: any("BudgetBurn" in str(m) for m in site.slack.messages), timeout=20)
    assert site.dead_letters() == []
    # The recorder writes the "replayed" event with its next batch.
    wait_until(partial(_recorded, site, BUDGET, EventKind.REPLAYED), timeout=10)
    replayed = [e for t in site.timelines(BUDGET) for e in t.events if e.kind.value == "replayed"]
    assert replayed and replayed[-1].data["by"] == "ui:oncall-amy"
    browser.get(f"{site.url}/ui/dead-letters")
    assert "No dead letters." in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "dead-letters-empty")


def _submit(browser: Any, button: str, timeout: float = 10.0) -> None:
    """Click a form's `button` and return once the page it submitted to has loaded.

    The click returns before the browser navigates: reading elements straight after it
    can find the old page's, which go stale under the reader."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, button).click()
    wait = WebDriverWait(browser, timeout)
    wait.until(expected_conditions.staleness_of(old))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def _text_once(browser: Any, selector: str, containing: str, timeout: float = 10.0) -> str:
    """The text of `selector` once it contains `containing`: the page a form submitted
    to, not the one it was submitted from."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    seen: list[str] = []

    def shown() -> bool:
        try:
            text = str(browser.find_element(By.CSS_SELECTOR, selector).text)
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        seen[:] = [text]
        return containing in text

    wait_until(shown, timeout=timeout)
    return seen[0]
