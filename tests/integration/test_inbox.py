"""The rep inbox in headless Chromium against a real worker and broker.

Debian's chromium and chromium-driver are installed by `make browser` (a prerequisite of
`make test`); Selenium drives them. A rep opens their link, an alert arrives live, one click
accepts it and the feedback is on sfa.feedback; a reject with its reason too; another rep's
link shows none of it, and a bad link gets the 401 page.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from streams.broker import wait_for_port
from streams.inbox import inbox_url, token_for
from tests.integration.conftest import wait_for
from tests.integration.segment import identify, track

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SECRET = "integration-inbox-secret"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not CHROMEDRIVER.exists():
        pytest.fail(f"{CHROMEDRIVER} is missing: `make browser` installs Debian's chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def _alerts(driver: WebDriver) -> list[WebElement]:
    return list(driver.find_elements(By.CSS_SELECTOR, "#alerts li.alert"))


def _alert_saying(driver: WebDriver, message: str) -> WebElement | None:
    return next(
        (li for li in _alerts(driver) if li.find_element(By.CLASS_NAME, "message").text == message),
        None,
    )


def _open_inbox(driver: WebDriver, url: str) -> None:
    """Load the page and wait until its live stream has delivered the recent alerts."""
    driver.get(url)
    WebDriverWait(driver, 20).until(
        lambda d: (
            d.find_element(By.ID, "status").get_attribute("data-state") == "live"
            and (_alerts(d) or d.find_element(By.ID, "empty").is_displayed())
        )
    )


def test_a_rep_sees_an_alert_arrive_live_and_answers_it_with_one_click(
    make_worker: Any, browser: WebDriver
) -> None:
    worker = make_worker(LEADSTREAM_INBOX_SECRET=SECRET)
    base = f"http://127.0.0.1:{worker.web_port}"
    open_until = datetime.now(UTC) + timedelta(days=1)
    uma_url = inbox_url(base, token_for("us-rep", SECRET, expires_at=open_until))
    wait_for(lambda: wait_for_port(worker.web_port, timeout_s=0.1), timeout_s=60, what="web port")

    # A bad link: 401, a sentence, nothing of anyone's.
    with pytest.raises(urllib.error.HTTPError) as denied:
        guessed = token_for("us-rep", "a-guessed-secret", expires_at=open_until)
        urllib.request.urlopen(f"{base}/inbox?token={guessed}")
    assert denied.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as expired:
        gone = token_for("us-rep", SECRET, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        urllib.request.urlopen(f"{base}/inbox?token={gone}")
    assert expired.value.code == 401
    browser.get(f"{base}/inbox?token=nope")
    assert browser.find_element(By.TAG_NAME, "h1").text == "This inbox link is not valid."

    _open_inbox(browser, uma_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Inbox of Uma US"
    assert _alerts(browser) == []

    # Two US leads turn hot while the page is open: routed to us-rep (Uma).
    worker.send(
        identify(
            "m-1",
            anon="a-1",
            user="crm-1",
            email="pat@robotics.example",
            name="Pat Lee",
            company="Robotics Inc",
            country="US",
        ),
        track("m-2", "Whitepaper Downloaded", anon="a-1", user="crm-1"),
        identify(
            "m-3",
            anon="a-2",
            user="crm-2",
            email="sam@gears.example",
            name="Sam Roe",
            company="Gears LLC",
            country="US",
        ),
        track("m-4", "Whitepaper Downloaded", anon="a-2", user="crm-2"),
    )
    pat = WebDriverWait(browser, 60).until(
        lambda d: _alert_saying(d, "Pat Lee downloaded a whitepaper")
    )
    sam = WebDriverWait(browser, 30).until(
        lambda d: _alert_saying(d, "Sam Roe downloaded a whitepaper")
    )
    assert "fresh" in (pat.get_attribute("class") or "")  # arrived live, not on load
    assert pat.find_element(By.CLASS_NAME, "who").text == "pat@robotics.example · Robotics Inc"
    assert pat.find_element(By.CLASS_NAME, "score").text == "30"

    # Accept: one click.
    pat.find_element(By.CSS_SELECTOR, "button.accept").click()
    WebDriverWait(browser, 20).until(
        lambda d: pat.find_element(By.CLASS_NAME, "outcome").text == "Accepted"
    )
    assert not pat.find_element(By.CSS_SELECTOR, "button.accept").is_displayed()

    # Reject with reason "other", which needs a few words.
    sam.find_element(By.CSS_SELECTOR, "button.reject").click()
    Select(sam.find_element(By.CSS_SELECTOR, "select.reason")).select_by_value("other")
    send = sam.find_element(By.CSS_SELECTOR, "button.send-reject")
    assert not send.is_enabled()  # not without the words
    sam.find_element(By.CSS_SELECTOR, "input.reason-text").send_keys("student project")
    send.click()
    WebDriverWait(browser, 20).until(
        lambda d: sam.find_element(By.CLASS_NAME, "outcome").text == "Rejected: student project"
    )

    # Both answers are on sfa.feedback, keyed by lead, by the rep.
    feedback = worker.read(worker.topics.feedback, lambda r: len(r) >= 2, timeout_s=20)
    by_lead = {f["lead_id"]: f for f in feedback}
    accepted = by_lead[pat.get_attribute("data-lead-id")]
    rejected = by_lead[sam.get_attribute("data-lead-id")]
    assert (accepted["status"], accepted["rep_id"], accepted["reason"]) == (
        "accepted",
        "us-rep",
        None,
    )
    assert (rejected["status"], rejected["rep_id"], rejected["reason"]) == (
        "rejected",
        "us-rep",
        "other",
    )
    assert rejected["reason_text"] == "student project"
    assert len(feedback) == 2

    # Reloaded, the page still shows the answers (this worker remembers them).
    _open_inbox(browser, uma_url)
    WebDriverWait(browser, 10).until(lambda d: len(_alerts(d)) == 2)
    reloaded = _alert_saying(browser, "Pat Lee downloaded a whitepaper")
    assert reloaded is not None
    assert reloaded.find_element(By.CLASS_NAME, "outcome").text == "Accepted"

    # Another rep's link: their own (empty) inbox, none of Uma's leads.
    _open_inbox(browser, inbox_url(base, token_for("jp-rep", SECRET, expires_at=open_until)))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Inbox of Jun JP"
    assert _alerts(browser) == []
    assert "Pat Lee" not in browser.page_source and "Sam Roe" not in browser.page_source
