"""The app in a real browser: Debian chromium driven by playwright, on a tiny untrained model.

Loads the page, edits the stem slots (type prompts, remove one, add one), generates, locks a
stem and regenerates the rest, then uploads a mix and separates it; each time it looks for the
audio players and spectrogram pictures. Saves a screenshot to $GMSDI_SCREENSHOT (default: the
temporary folder, so the test writes nothing tracked) and prints the click-to-result time of each task.

Skipped only when chromium is not installed (packages-dev.txt; scripts/test.sh installs it as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)"),
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword"),
]
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = Path(os.environ.get("GMSDI_SCREENSHOT") or Path(tempfile.gettempdir()) / "gmsdi_app_screenshot.png")
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def pipe():
    from gmsdi.app import tiny_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_pipeline()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def app_url(pipe):
    from gmsdi.app import AppConfig, build_ui, launch_options

    config = AppConfig(max_seconds=3.0, seconds=1.0, generate_steps=2, separate_steps=16)  # Dirac: 14+ for 4 stems
    demo = build_ui(pipe, config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(config))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        page.get_by_role("button", name="Generate all").wait_for()
        yield page
        browser.close()


def _value(page, selector: str) -> str:
    return page.locator(f"{selector} input, {selector} textarea").first.input_value()


def _click_and_wait(page, button: str, status: str, needle: str) -> float:
    """Clicks `button`, waits until the #`status` markdown names the finished task; returns seconds."""
    before = page.inner_text(status)
    t0 = time.perf_counter()
    page.get_by_role("button", name=button, exact=True).click()
    # the run summary (not the progress text, which also names the task) contains "stems ·"
    page.wait_for_function(
        "([sel, needle, before]) => { const t = document.querySelector(sel).innerText;"
        " return t !== before && t.includes(needle) && t.includes('stems ·'); }",
        arg=[status, needle, before], timeout=TIMEOUT_MS)
    return time.perf_counter() - t0


def _players(page, scope: str = "") -> int:
    """Audio players that hold a file (their download link points at one)."""
    return page.locator(f"{scope} .stem-audio a[download]").count()


def _pictures(page, scope: str = "") -> int:
    return page.locator(f"{scope} .spectrogram img[src]").count()


def _tone_file(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


def _aligned(page, slot) -> tuple[dict, dict]:
    """The bounding boxes of a slot's waveform and of the spectrogram below it."""
    wave = slot.locator("canvas").first.bounding_box()
    picture = slot.locator(".spectrogram img").first.bounding_box()
    return wave, picture


def test_generate_accompany_separate(page, tmp_path) -> None:
    assert "Untrained tiny model" in page.inner_text("#model-banner")
    # the main action is on the first screen (1280×800), before any scrolling
    button = page.get_by_role("button", name="Generate all", exact=True).bounding_box()
    assert page.evaluate("window.scrollY") == 0 and button["y"] + button["height"] <= 800, button
    prompts = page.locator(".stem-prompt textarea, .stem-prompt input")
    assert prompts.count() >= 4 and prompts.nth(0).input_value() == "bass"  # the preset

    # type prompts; remove the fourth stem; add one back and name it
    prompts.nth(0).fill("fretless bass")
    prompts.nth(1).fill("drums")
    visible = page.locator(".stem-prompt:visible textarea, .stem-prompt:visible input")

    def click(name: str, index: int, expect: int) -> None:
        page.get_by_role("button", name=name).nth(index).click()
        page.wait_for_function(f"document.querySelectorAll('.stem-prompt').length && [...document.querySelectorAll("
                               f"'.stem-prompt')].filter(e => e.offsetParent !== null).length === {expect}")

    click("✕ Remove", 3, 3)
    click("✕ Remove", 2, 2)
    click("+ Add stem", 0, 3)
    assert visible.count() == 3 and visible.nth(2).input_value() == ""
    visible.nth(2).fill("piano")

    seconds = {"generate": _click_and_wait(page, "Generate all", "#generate-status", "generate")}
    assert "3 stems" in page.inner_text("#generate-status")
    assert _value(page, "#generate-seed-used").isdigit()
    page.locator(".mix-audio a[download]").first.wait_for()
    assert _players(page) == 3 and _pictures(page) >= 4  # 3 stems + the mix
    # each spectrogram spans its player's waveform, so their time axes line up
    for slot in (page.locator(".stem-slot").first, page.locator(".mix-audio").first.locator("xpath=..")):
        wave, picture = _aligned(page, slot)
        tolerance = 0.01 * wave["width"]  # 1 % of the time axis
        assert abs(wave["x"] - picture["x"]) <= tolerance, (wave, picture)
        assert abs(wave["x"] + wave["width"] - picture["x"] - picture["width"]) <= tolerance, (wave, picture)

    # lock the first stem; upload audio into the third, which locks it; regenerate the second
    mix = _tone_file(tmp_path / "mix.wav")
    locks = page.locator(".stem-lock input[type=checkbox]")
    locks.nth(0).check()
    slot = page.locator(".stem-audio").nth(2)
    slot.get_by_role("button", name="Clear").click()  # a slot holding audio takes a new file once cleared
    slot.locator("input[type=file]").set_input_files(str(mix))
    page.wait_for_function("document.querySelectorAll('.stem-lock input[type=checkbox]')[2].checked")
    seconds["accompany"] = _click_and_wait(page, "Regenerate unlocked", "#generate-status", "accompany")
    assert "3 stems" in page.inner_text("#generate-status")
    assert locks.nth(0).is_checked() and not locks.nth(1).is_checked() and locks.nth(2).is_checked()
    page.locator(".mix-audio a[download]").first.wait_for()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOT))  # the first screen, 1280×800

    # separate an uploaded mix
    page.get_by_role("tab", name="Separate / extract").click()
    page.locator("#separate-input input[type=file]").set_input_files(str(mix))
    page.locator("#separate-input audio, #separate-input a[download]").first.wait_for(state="attached")
    page.locator("#separate-prompts textarea, #separate-prompts input").first.fill("bass, piano")
    # the default method is the ensemble: per stem, separator or extractor as assets/ensemble.json chose
    seconds["separate"] = _click_and_wait(page, "Separate (ensemble)", "#separate-status", "ensemble")
    assert "2 stems" in page.inner_text("#separate-status")
    page.locator("#separate-tab .mix-audio a[download], .mix-audio:visible a[download]").first.wait_for()
    assert page.locator(".stem-audio:visible a[download]").count() == 2
    assert page.locator(".spectrogram:visible img[src]").count() == 3
    # every picture is drawn, also those below the fold, without scrolling to them
    page.wait_for_function("[...document.querySelectorAll('.spectrogram img')].filter(i => i.offsetParent !== null)"
                           ".every(i => i.loading === 'eager' && i.complete && i.naturalWidth > 0)")
    print("\nclick-to-result seconds (tiny model, 1 s of audio, 2 steps): "
          + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


def test_stop_button_stops_the_model(page, pipe, monkeypatch) -> None:
    """Stop cancels the event in the browser and sets the run's flag; the sampler stops at once."""
    from gmsdi.sampling import Cancelled

    seen = {"steps": 0, "cancelled": False}
    generate = pipe.generate

    def counting(*args, callback=None, **kwargs):
        def cb(info):
            seen["steps"] += 1
            return callback(info)

        try:
            return generate(*args, callback=cb, **kwargs)
        except Cancelled:
            seen["cancelled"] = True
            raise

    monkeypatch.setattr(pipe, "generate", counting)
    page.get_by_role("tab", name="Generate & accompany").click()
    page.locator("input[aria-label='number input for Steps']").first.fill("200")
    page.locator("input[aria-label='number input for Steps']").first.press("Enter")
    status = page.inner_text("#generate-status")
    page.get_by_role("button", name="Generate all", exact=True).click()
    deadline = time.monotonic() + 30
    while seen["steps"] < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert seen["steps"] >= 2, "the run never started"
    page.get_by_role("button", name="Stop", exact=True).first.click()
    deadline = time.monotonic() + 15
    while not seen["cancelled"] and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert seen["cancelled"], "the model kept running after Stop"
    assert seen["steps"] < 3 * 200 and page.inner_text("#generate-status") == status  # no result shown
