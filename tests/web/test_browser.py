"""The page in a real headless browser (Debian's chromium + chromium-driver, selenium):
load it, watch the rows turn ready, restart a worker and see the event, open its logs.
The screenshots it takes are the ones in docs/img/ (README.md shows one)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until
from tests.web.conftest import TOKEN, Web

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="chromium and chromium-driver are installed by scripts/setup.sh",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _state(browser: Any, service: str) -> str | None:
    rows = browser.find_elements("css selector", f'tr[data-service="{service}"]')
    return rows[0].get_attribute("data-state") if rows else None


def _click_and_confirm(browser: Any, selector: str) -> None:
    browser.find_element("css selector", selector).click()
    wait_until(lambda: _alert(browser), timeout=5, message="the confirmation")
    browser.switch_to.alert.accept()


def _alert(browser: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.switch_to.alert  # noqa: B018 - raises while there is none
    except NoAlertPresentException:
        return False
    return True


def test_the_page_live(web: Web, browser: Any) -> None:
    web.start()
    browser.get(f"{web.base}/#token={TOKEN}")
    wait_until(lambda: browser.find_element("tag name", "body").get_attribute("data-loaded"))
    assert browser.current_url == f"{web.base}/"  # the token left the address bar
    assert {_state(browser, s) for s in ("db", "api", "worker")} == {"stopped"}
    _click_and_confirm(browser, "#up-all")
    wait_until(
        lambda: all(_state(browser, s) == "ready" for s in ("db", "api", "worker")),
        timeout=30,
        message="every row ready",
    )
    # the graph colours each node by state, and the timeline has a bar per service
    wait_until(
        lambda: (
            len(browser.find_elements("css selector", '#graph g.node[data-state="ready"]')) == 3
        ),
        timeout=10,
    )
    wait_until(lambda: len(browser.find_elements("css selector", "#timeline rect.bar")) == 3)
    assert browser.find_elements("css selector", "#graph g.node.critical")
    IMAGES.mkdir(exist_ok=True)
    browser.save_screenshot(str(IMAGES / "web-ready.png"))

    seen = {
        e.get_attribute("data-seq") for e in browser.find_elements("css selector", "#events li")
    }
    _click_and_confirm(browser, 'tr[data-service="worker"] button[data-action="restart"]')

    def restarted() -> bool:
        items = browser.find_elements("css selector", '#events li[data-service="worker"]')
        return any(i.get_attribute("data-seq") not in seen and "→ ready" in i.text for i in items)

    wait_until(restarted, timeout=30, message="worker's restart on the page")
    latencies = browser.execute_script("return window.svcorch.latencies")
    assert latencies and max(latencies) < 5.0

    browser.find_element(
        "css selector", 'tr[data-service="worker"] button[data-action="logs"]'
    ).click()
    wait_until(lambda: "ready on" in browser.find_element("id", "log").text, timeout=15)
    browser.find_element("id", "log-search").send_keys("ready on")
    wait_until(lambda: browser.find_elements("css selector", "#log mark"))
    browser.save_screenshot(str(IMAGES / "web-logs.png"))

    browser.set_window_size(390, 844)  # a phone
    wait_until(lambda: browser.execute_script("return document.body.scrollWidth") <= 390)
    browser.save_screenshot(str(IMAGES / "web-phone.png"))


def test_a_wrong_token_is_told_not_obeyed(web: Web, browser: Any) -> None:
    web.start()
    browser.get(f"{web.base}/#token=wrong-token-wrong-token-wrong")
    wait_until(lambda: browser.find_element("tag name", "body").get_attribute("data-loaded"))
    _click_and_confirm(browser, "#up-all")
    wait_until(lambda: "401" in browser.find_element("id", "toast").text, timeout=10)
    assert _state(browser, "db") == "stopped"
