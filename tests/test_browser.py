"""Pages in a real browser (headless Chromium driven by Selenium): /docs
renders every REST operation and Authorize logs in through /token; an <img>
shows a stream's JPEG frames through /data/{sid}/mjpeg; the /ui console logs
in, lists streams live, renders entries, tails, edits and deletes. Skipped,
with the reason, only where no Chromium or ChromeDriver is installed
(.ci/run installs Debian's). Each page is saved as a screenshot in
test-artifacts/browser/ (PTG_TEST_ARTIFACTS overrides the folder), and no
page may log an error to the browser console."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from api.openapi import SPEC
from tests.conftest import ROOT, EngineProcess

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("PTG_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "browser"


def screenshot(driver: Any, name: str) -> None:
    """What the page looked like, for a person to look at after the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def console_errors(driver: Any) -> list[str]:
    """Errors the pages logged to the browser console since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="ptg-chromium-")
    # This machine's network is closed: no background connections, no sandbox as root.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,2000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def operations_in_spec() -> int:
    return sum(len(methods) for methods in SPEC["paths"].values())


def test_docs_show_every_operation_and_authorize_logs_in(browser: object, engine: EngineProcess) -> None:
    driver = browser
    driver.get(f"{engine.base_url}/docs")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 20)
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    page = driver.page_source  # type: ignore[attr-defined]
    assert "Unable to render this definition" not in page
    blocks = driver.find_elements(By.CSS_SELECTOR, ".opblock")  # type: ignore[attr-defined]
    assert len(blocks) == operations_in_spec()
    assert "WebSocket push" in page and "WebSocket pull" in page

    driver.find_element(By.CSS_SELECTOR, "button.authorize").click()  # type: ignore[attr-defined]
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "oauth_username")))
    driver.find_element(By.ID, "oauth_username").send_keys("docs")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "oauth_password").send_keys("docs")  # type: ignore[attr-defined]
    submit = driver.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize")  # type: ignore[attr-defined]
    driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", submit)  # type: ignore[attr-defined]
    # Logged in: the dialog offers to log out, and no error is shown.
    wait.until(
        expected_conditions.presence_of_element_located(
            (By.XPATH, "//div[contains(@class,'auth-btn-wrapper')]//button[contains(., 'Logout')]")
        )
    )
    assert "auth errors" not in driver.page_source.lower()  # type: ignore[attr-defined]
    screenshot(driver, "docs")
    assert console_errors(driver) == []


def test_an_img_shows_a_streams_jpeg_frames(
    browser: object, engine: EngineProcess, token: str, store: redis.Redis, sid: str
) -> None:
    driver = browser
    driver.get(f"{engine.base_url}/ping")  # type: ignore[attr-defined]
    # A real JPEG, drawn and encoded by the browser itself.
    data_url = driver.execute_script(  # type: ignore[attr-defined]
        "const c = document.createElement('canvas'); c.width = 64; c.height = 48;"
        "const g = c.getContext('2d'); g.fillStyle = '#c03'; g.fillRect(0, 0, 64, 48);"
        "return c.toDataURL('image/jpeg');"
    )
    jpeg = base64.b64decode(data_url.split(",", 1)[1])
    assert jpeg[:2] == b"\xff\xd8"
    store.xadd(sid, {"d": jpeg})
    driver.execute_script(  # type: ignore[attr-defined]
        "const img = document.createElement('img'); img.id = 'preview';"
        f"img.src = '/data/{sid}/mjpeg?max_fps=5&token={token}'; document.body.appendChild(img);"
    )
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.getElementById('preview').naturalWidth") == 64
    )
    assert driver.execute_script("return document.getElementById('preview').naturalHeight") == 48  # type: ignore[attr-defined]
    screenshot(driver, "mjpeg")


def jpeg_from_browser(driver: Any, width: int, height: int) -> bytes:
    data_url = driver.execute_script(
        f"const c = document.createElement('canvas'); c.width = {width}; c.height = {height};"
        "const g = c.getContext('2d'); g.fillStyle = '#0a6'; g.fillRect(0, 0, c.width, c.height);"
        "return c.toDataURL('image/jpeg');"
    )
    return base64.b64decode(data_url.split(",", 1)[1])


def test_the_console_logs_in_and_shows_streams_live(
    browser: Any, engine: EngineProcess, store: redis.Redis, sid: str
) -> None:
    driver = browser
    wait = WebDriverWait(driver, 20)
    driver.get(f"{engine.base_url}/ui")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{engine.base_url}/ui#/")
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "username")))
    driver.find_element(By.ID, "username").send_keys("console")
    driver.find_element(By.ID, "password").send_keys("console")
    driver.find_element(By.ID, "login-button").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "streams")))

    # A stream pushed to while the table is open shows up with its entries/s and bytes/s.
    pushing = threading.Event()

    def push() -> None:
        while not pushing.is_set():
            store.xadd(sid, {"d": b'{"reading": 1}'})
            time.sleep(0.02)

    pusher = threading.Thread(target=push)
    pusher.start()
    try:
        row = f"tr[data-sid='{sid}'] td.rate"
        byte_rate = f"tr[data-sid='{sid}'] td.bytes-rate"  # "700", "1.2 KiB": the number first
        wait.until(
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, row)
                and float(d.find_element(By.CSS_SELECTOR, row).text) > 0
                and float(d.find_element(By.CSS_SELECTOR, byte_rate).text.split()[0]) > 0
            )
        )
        screenshot(driver, "ui-streams")
    finally:
        pushing.set()
        pusher.join()

    # A camera stream: its JPEG renders among the entries and in the live view.
    camera = f"{sid}-camera"
    store.xadd(camera, {"d": jpeg_from_browser(driver, 40, 30)})
    driver.get(f"{engine.base_url}/ui#/stream/{camera}")
    wait.until(
        lambda d: (
            d.execute_script(
                "const i = document.querySelector('img.payload-image'); return i && i.naturalWidth"
            )
            == 40
        )
    )
    wait.until(
        lambda d: (
            d.execute_script("const i = document.getElementById('camera-view'); return i && i.naturalWidth")
            == 40
        )
    )

    # The live tail shows what is pushed now, as text.
    time.sleep(0.3)  # the pull socket is open
    store.xadd(camera, {"d": b"a line of text"})
    wait.until(lambda d: "a line of text" in d.find_element(By.ID, "tail").text)
    screenshot(driver, "ui-stream")

    # Metadata saved from the editor is what the API then returns.
    editor = driver.find_element(By.ID, "meta")
    editor.clear()
    editor.send_keys('{"max_len": 77}')
    driver.find_element(By.ID, "save-meta").click()
    wait.until(lambda d: store.get(f"XMETA:{camera}") is not None)
    assert json.loads(store.get(f"XMETA:{camera}")) == {"max_len": 77}

    # Delete asks first; once confirmed the stream and its metadata are gone.
    driver.find_element(By.ID, "delete").click()
    wait.until(expected_conditions.alert_is_present())
    driver.switch_to.alert.accept()
    wait.until(lambda d: store.exists(camera, f"XMETA:{camera}") == 0)
    assert console_errors(driver) == []
