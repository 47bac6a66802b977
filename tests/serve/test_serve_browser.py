"""The web app in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's
Python package; no browser download), against the real server on loopback.

Screenshots are kept as test artifacts in ``$EZAUDIO_TEST_ARTIFACTS`` (default: a folder in
pytest's temporary directory, printed at the end of each test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import wav_bytes

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)"
)
# As the workplace's probe starts it: no sandbox as root, nothing reaching the network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("EZAUDIO_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    url, _ = server
    context = browser.new_context(viewport={"width": 1100, "height": 1200})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/")
    # (Predicates are functions: the page's policy forbids evaluating strings.)
    page.wait_for_function(
        "() => document.getElementById('model-info').textContent.startsWith('Model')"
    )
    # Record every status line the progress display shows.
    page.evaluate(
        """() => {
        window.statusLog = [];
        for (const id of ["gen-status", "edit-status"]) {
          const el = document.getElementById(id);
          new MutationObserver(() => window.statusLog.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true});
        }
      }"""
    )
    yield page
    context.close()
    assert errors == [], errors


PLAY = """async (id) => {
  const audio = document.getElementById(id);
  audio.muted = true;
  await audio.play();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const state = {ready: audio.readyState, duration: audio.duration, time: audio.currentTime,
                 error: audio.error && audio.error.code, src: audio.src};
  audio.pause();
  return state;
}"""

IMAGE_LOADED = (
    "(id) => { const i = document.getElementById(id); return i.complete && i.naturalWidth > 0; }"
)


def test_generate_in_the_browser(page, artifacts):
    assert "random-tiny" in page.text_content("#model-info")
    page.click("#gen-examples button >> nth=0")
    assert page.input_value("#gen-prompt") == "a dog barks in the distance while rain falls"
    page.fill("#gen-prompt", "a dog barks")
    page.fill("#gen-seconds", "1")
    page.fill("#gen-steps", "50")
    page.click("#gen-submit")
    page.wait_for_selector("#gen-result", state="visible", timeout=60_000)
    played = page.evaluate(PLAY, "gen-audio")
    assert played["error"] is None and played["ready"] >= 2 and played["time"] > 0
    assert played["src"].startswith("blob:") and abs(played["duration"] - 1.0) < 0.01
    assert page.evaluate(IMAGE_LOADED, "gen-spectrogram")
    download = page.get_attribute("#gen-download", "download")
    seed = page.input_value("#gen-seed")
    assert download == f"ezaudio-{seed}.wav"
    statuses = page.evaluate("window.statusLog")
    assert any(text.startswith("Sampling: step") for text in statuses), statuses
    assert page.text_content("#gen-status") == "Done."
    page.screenshot(path=str(artifacts / "generate.png"), full_page=True)

    # The same seed, typed in, gives the same audio (randomise off).
    page.uncheck("#gen-random")
    assert page.is_enabled("#gen-seed")
    page.click("#gen-submit")
    page.wait_for_function("() => document.getElementById('gen-status').textContent === 'Done.'")
    assert page.input_value("#gen-seed") == seed
    print(f"\nscreenshots: {artifacts}")


def test_bad_input_gets_a_clear_message_on_the_field(page, artifacts):
    page.fill("#gen-prompt", "a dog barks")
    page.fill("#gen-steps", "0")
    page.click("#gen-submit")
    page.wait_for_selector("#gen-error", state="visible")
    assert "steps must be an integer in [1, 1000], got 0" in page.text_content("#gen-error")
    assert page.get_attribute("#gen-steps", "aria-invalid") == "true"
    page.screenshot(path=str(artifacts / "generate-bad-input.png"), full_page=True)
    # Fixing it clears the message.
    page.fill("#gen-steps", "2")
    page.fill("#gen-seconds", "0.5")
    page.click("#gen-submit")
    page.wait_for_selector("#gen-result", state="visible", timeout=60_000)
    assert page.is_hidden("#gen-error")
    assert page.get_attribute("#gen-steps", "aria-invalid") is None


def test_edit_in_the_browser(page, artifacts, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(2.0))
    page.click("#tab-edit")
    assert page.is_visible("#panel-edit") and page.is_hidden("#panel-generate")
    page.click("#edit-submit")  # no file yet
    assert "Choose an audio file" in page.text_content("#edit-error")
    page.set_input_files("#edit-file", str(clip))
    page.wait_for_function(
        "() => document.getElementById('edit-file-info').textContent.endsWith(' s')"
    )
    page.fill("#edit-prompt", "a door slams")
    page.fill("#edit-start", "0.5")
    page.fill("#edit-length", "0.8")
    page.fill("#edit-steps", "20")
    page.click("#edit-submit")
    page.wait_for_selector("#edit-result", state="visible", timeout=60_000)
    for audio in ("edit-audio", "edit-original-audio"):
        played = page.evaluate(PLAY, audio)
        assert played["error"] is None and played["ready"] >= 2 and played["time"] > 0
        assert abs(played["duration"] - 2.0) < 0.01
    assert page.evaluate(IMAGE_LOADED, "edit-spectrogram")
    assert page.evaluate(IMAGE_LOADED, "edit-original-spectrogram")
    assert page.get_attribute("#edit-spectrogram", "src") != page.get_attribute(
        "#edit-original-spectrogram", "src"
    )
    page.screenshot(path=str(artifacts / "edit.png"), full_page=True)

    # A region after the end of the clip: the server's message, on the field.
    page.fill("#edit-start", "5")
    page.click("#edit-submit")
    page.wait_for_selector("#edit-error", state="visible")
    assert "after the end of the audio" in page.text_content("#edit-error")
    assert page.get_attribute("#edit-start", "aria-invalid") == "true"


def test_cancel_in_the_browser_stops_the_request_on_the_server(page, server):
    import time

    import httpx

    url, _ = server
    page.fill("#gen-prompt", "a long one")
    page.fill("#gen-seconds", "2")
    page.fill("#gen-steps", "1000")
    page.click("#gen-submit")
    page.wait_for_function(
        "() => document.getElementById('gen-status').textContent.startsWith('Sampling: step')",
        timeout=30_000,
    )
    assert page.text_content("#gen-submit") == "Cancel"
    page.click("#gen-submit")
    page.wait_for_function(
        "() => document.getElementById('gen-status').textContent === 'Cancelled.'"
    )
    deadline = time.monotonic() + 10
    while httpx.get(url + "/v1/health").json()["busy"]:  # the sampler stops at its next step
        assert time.monotonic() < deadline, "the server kept sampling a cancelled request"
        time.sleep(0.05)
    assert page.text_content("#gen-submit") == "Generate" and page.is_hidden("#gen-error")
