"""The dashboard in a real browser: Debian chromium + chromium-driver, driven by Selenium, against
`canary-analyzer serve --sim` on loopback. Each test saves a screenshot under its tmp dir."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_or_skip
from tests.daemon_support import OPERATE, OPERATE_TOKEN, READ_TOKEN, REVIEWS

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
SIM_SPEED = 120  # a 1 min tick every 0.5 s: a healthy rollout promotes in about 10 s
SPECS = ("reviews", "ratings", "details", "productpage")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, root: Path) -> None:
        specs = root / "specs"
        specs.mkdir()
        for name in SPECS:  # one VirtualService each, so rollouts run side by side
            (specs / f"{name}.yaml").write_text(
                REVIEWS.read_text().replace("name: reviews", f"name: {name}")
                .replace("virtualService: reviews", f"virtualService: {name}").replace("host: reviews", f"host: {name}")
                .replace("destinationRule: reviews", f"destinationRule: {name}"))
        tokens = root / "tokens"
        tokens.write_text(f"operate {OPERATE_TOKEN}\nread {READ_TOKEN}\n")
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = (root / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "analyzer.app.cli", "serve", "--db", f"sqlite:///{root / 'store.db'}",
             "--listen", self.url.removeprefix("http://"), "--token-file", str(tokens), "--specs", str(specs),
             "--sim", "--sim-speed", str(SIM_SPEED), "--poll", "0.1", "--lease-ttl", "2",
             "--no-leader-election"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve --sim did not start: {(root / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def start(self, spec: str, scenario: str) -> str:
        r = httpx.post(f"{self.url}/v1/rollouts", json={"spec": spec, "scenario": scenario, "seed": 5},
                       headers=OPERATE, timeout=10)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def phase(self, rollout_id: str) -> str:
        return str(httpx.get(f"{self.url}/v1/rollouts/{rollout_id}", headers=OPERATE, timeout=10).json()["phase"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("serve-sim"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Set up after the server, so it quits first: no live stream then holds the server's shutdown."""
    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    require_or_skip(binary is not None and driver_path is not None,
                    "Debian chromium and chromium-driver are not installed (scripts/ensure-services.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        require_or_skip(False, "selenium is not installed (pip install -e '.[dev]')")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager phones home otherwise
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=str(driver_path)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()  # before the server stops, so no live stream holds its shutdown


@pytest.fixture
def page(browser: Any, server: Server, tmp_path: Path) -> Iterator[Any]:
    browser.get(f"{server.url}/login")
    browser.delete_all_cookies()
    browser.get_log("browser")  # drop what earlier tests left
    yield browser
    browser.save_screenshot(str(tmp_path / "screenshot.png"))
    assert (tmp_path / "screenshot.png").stat().st_size > 1000
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def wait(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def login(driver: Any, server: Server, token: str, next_path: str = "/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}{next_path}")
    assert "/login" in driver.current_url  # signed out: sent to the sign-in form
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait(lambda: "/login" not in driver.current_url, 10, "sign-in")
    assert driver.current_url.endswith(next_path)


def check_accessible(driver: Any) -> None:
    """A title, headings in order from h1, a label for every form field, every button reachable by Tab."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    assert driver.title.strip()
    levels = driver.execute_script(
        "return Array.from(document.querySelectorAll('h1,h2,h3,h4,h5,h6')).map(h => Number(h.tagName[1]))")
    assert levels and levels[0] == 1, levels
    assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), levels
    unlabelled = driver.execute_script(
        "return Array.from(document.querySelectorAll('input:not([type=hidden]),select,textarea'))"
        ".filter(f => !(f.id && document.querySelector(`label[for='${f.id}']`)) && !f.closest('label')"
        " && !f.getAttribute('aria-label')).map(f => f.name)")
    assert unlabelled == [], unlabelled
    buttons = driver.execute_script("return document.querySelectorAll('button').length")
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    driver.execute_script("document.body.focus()")
    reached = 0
    for _ in range(120):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.execute_script("var a = document.activeElement; if (a && a.tagName === 'BUTTON' && "
                                 "!a.dataset.reached) { a.dataset.reached = '1'; return true } return false"):
            reached += 1
        if reached == buttons:
            break
    assert reached == buttons, f"{reached} of {buttons} buttons reached by Tab"


def test_sign_in_then_every_page_is_accessible(page: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    page.get(f"{server.url}/login")
    check_accessible(page)
    rollout_id = server.start("productpage", "low-traffic")
    login(page, server, OPERATE_TOKEN)
    cookie = page.get_cookie("ca_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "expiry" in cookie
    assert page.execute_script("return document.cookie") == ""  # HttpOnly: scripts cannot read it
    check_accessible(page)
    page.get(f"{server.url}/rollouts/{rollout_id}")
    check_accessible(page)
    page.get(f"{server.url}/rollouts/{rollout_id}/confirm?command=pause")
    check_accessible(page)
    page.get(f"{server.url}/plan")
    check_accessible(page)
    page.find_element(By.ID, "p-spec").send_keys(REVIEWS.read_text())
    page.find_element(By.ID, "p-rps").clear()
    page.find_element(By.ID, "p-rps").send_keys("2")
    page.find_element(By.CSS_SELECTOR, "form[action='/plan'] button").click()
    out = wait(lambda: page.find_elements(By.ID, "plan-output"), 30, "the plan")
    assert "load:" in out[0].text
    check_accessible(page)


def test_healthy_rollout_promotes_while_the_page_updates_without_reload(page: Any, server: Server) -> None:

    login(page, server, READ_TOKEN)
    rollout_id = server.start("reviews", "healthy")
    page.get(f"{server.url}/rollouts/{rollout_id}")
    page.execute_script("window.notReloaded = true")
    seen: list[str] = []

    def promoted() -> bool:
        # One script reads both: the live update may replace the section between two separate lookups.
        weight, phase = page.execute_script(
            "return [document.getElementById('canary-weight').textContent, "
            "document.querySelector('dl.facts').dataset.phase]")
        if not seen or seen[-1] != weight:
            seen.append(weight)
        return bool(phase == "Succeeded")

    wait(promoted, 60, "the promotion on the page")
    assert page.execute_script("return window.notReloaded === true")  # the same page, updated in place
    numeric = [w for w in seen if w.endswith("%")]
    assert len(set(numeric)) >= 3, seen  # several weights passed by: 10%, 25%, ...
    assert int(page.execute_script("return document.body.dataset.updates")) >= 3
    assert server.phase(rollout_id) == "Succeeded"


def test_error_regression_page_shows_the_rollback_reason(page: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    login(page, server, READ_TOKEN)
    rollout_id = server.start("ratings", "error-regression")
    wait(lambda: server.phase(rollout_id) == "RolledBack", 60, "the rollback")
    page.get(f"{server.url}/rollouts/{rollout_id}")
    facts = page.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "RolledBack" in facts and "rollback" in facts and "errors" in facts
    page.get(f"{server.url}/?phase=RolledBack")
    assert rollout_id in page.find_element(By.ID, "live-finished").text


def test_abort_pressed_by_an_operator(page: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    login(page, server, OPERATE_TOKEN)
    rollout_id = server.start("details", "low-traffic")
    page.get(f"{server.url}/rollouts/{rollout_id}")
    page.find_element(By.CSS_SELECTOR, "button.cmd.abort").click()
    heading = wait(lambda: page.find_elements(By.CSS_SELECTOR, "h1.confirm"), 10, "the confirmation")
    assert "Abort rollout" in heading[0].text
    page.find_element(By.ID, "confirm").click()
    result = wait(lambda: page.find_elements(By.CSS_SELECTOR, "#command-result.applied"), 30, "the result")
    assert "phase now Aborted" in result[0].text
    assert server.phase(rollout_id) == "Aborted"
    assert not page.find_elements(By.CSS_SELECTOR, "button.cmd")  # finished: no more commands


def test_read_user_sees_no_buttons(page: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    login(page, server, READ_TOKEN)
    running = [r for r in httpx.get(f"{server.url}/v1/rollouts", headers=OPERATE).json()["rollouts"]
               if r["phase"] not in ("Succeeded", "RolledBack", "Aborted", "Failed")]
    rollout_id = running[0]["id"] if running else server.start("reviews", "low-traffic")
    page.get(f"{server.url}/rollouts/{rollout_id}")
    assert page.find_elements(By.ID, "canary-weight")
    assert not page.find_elements(By.CSS_SELECTOR, "button.cmd")
    assert [b.text for b in page.find_elements(By.TAG_NAME, "button")] == ["Sign out"]
