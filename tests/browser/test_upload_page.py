"""The volunteer's upload page (bentos/page.py) in a real headless Chromium, against the real
champion served by `bentoml serve` (tests/fixtures/champion.py: the same server the
integration tests check against the registered MLflow model).

What a volunteer does: open ``/``, choose a photo, press the button, read the score and the
advice; choose a file that is not a photo and read why it was refused. The page must show what
the API answers for the same bytes. Screenshots go to ``data/screenshots/``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures.browser import save_screenshot
from tests.fixtures.champion import Champion

pytestmark = pytest.mark.browser

WAIT_S = 120  # one photo through the model on a busy 2-core machine takes well under this


def _submit(browser: WebDriver, url: str, path: Path) -> None:
    """Open the page, choose ``path`` in the file input, press the button."""
    browser.get(f"{url}/")
    assert "Pawpularity" in browser.title
    browser.find_element(By.CSS_SELECTOR, 'form input[type="file"][name="photo"]').send_keys(
        str(path)
    )
    browser.find_element(By.CSS_SELECTOR, 'form button[type="submit"]').click()


def _wait_for(browser: WebDriver, css: str) -> WebElement:
    return WebDriverWait(browser, WAIT_S).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def test_upload_shows_the_served_score_and_advice(
    browser: WebDriver, champion: Champion, champion_server: str, tmp_path: Path
) -> None:
    photo = champion.photos[0]  # a test-split photo: never trained on
    fmt = Image.open(io.BytesIO(photo)).format.lower()
    path = tmp_path / f"rex.{fmt}"
    path.write_bytes(photo)

    _submit(browser, champion_server, path)
    score = _wait_for(browser, ".result .score")

    predicted = httpx.post(
        f"{champion_server}/predict", files=[("images", (path.name, photo))], timeout=WAIT_S
    )
    assert predicted.status_code == 200, predicted.text
    (expected,) = predicted.json()
    # The page rounds: one decimal in data-score, a whole number on screen.
    assert score.get_attribute("data-score") == f"{expected:.1f}"
    shown = re.fullmatch(r"(\d+)\s*/\s*100", score.text)
    assert shown, f"score text {score.text!r}"
    assert shown.group(1) == f"{expected:.0f}"

    # The advice, as the API gives it for the same bytes, each item on screen.
    advised = httpx.post(
        f"{champion_server}/advise", files={"image": (path.name, photo)}, timeout=WAIT_S
    )
    assert advised.status_code == 200, advised.text
    messages = [item["message"] for item in advised.json()["advice"]]
    items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "ul.advice li")]
    assert items and all(text.strip() for text in items)
    assert len(items) == len(messages)
    for text, message in zip(items, messages, strict=True):
        assert message in text

    # The preview of the scored photo decoded and has a size.
    preview = browser.find_element(By.CSS_SELECTOR, '.result img[alt="your photo"]')
    assert browser.execute_script("return arguments[0].naturalWidth", preview) > 0
    assert browser.find_elements(By.CSS_SELECTOR, ".error") == []

    shot = save_screenshot(browser, "upload-page-result")
    assert shot.stat().st_size > 0


def test_a_file_that_is_not_a_photo_is_refused_with_the_reason(
    browser: WebDriver, champion_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Rex: 3 years old, loves walks. Not a photo.\n")

    _submit(browser, champion_server, path)
    alert = _wait_for(browser, '.error[role="alert"]')

    assert alert.text.startswith("notes.txt: ")
    assert "not an image" in alert.text
    assert browser.find_elements(By.CSS_SELECTOR, ".result") == []
    # The form is back for another try.
    assert browser.find_elements(By.CSS_SELECTOR, 'form input[type="file"][name="photo"]')
    shot = save_screenshot(browser, "upload-page-error")
    assert shot.stat().st_size > 0

    assert httpx.get(f"{champion_server}/readyz", timeout=30).status_code == 200
