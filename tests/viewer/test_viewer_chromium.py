"""The viewer page in headless Chromium: it renders points, reports no error, and the
screenshot shows the class colours (WebGL when available, and the 2D-canvas fallback)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cad2scan.io.predictions import class_colors
from cad2scan.viewer.data import ViewScene
from cad2scan.viewer.page import BACKGROUND, UNLABELLED_COLOR, ViewDocument, build_html

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="headless Chromium not installed (Debian: apt install chromium)")

NAMES = ["chair", "table", "background"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r':CONSOLE[:(]\d+\)?\] "(.*)", source: ')
# Chromium's own notices about its software WebGL, printed to the page console; nothing else may appear
BROWSER_NOTICES = ("[]Automatic fallback to software WebGL", "GL Driver Message (OpenGL, Performance")
STATUS = re.compile(r'<div id="status"[^>]*>([^<]*)</div>')


def run_chromium(tmp_path: Path, page: Path, fragment: str = "", screenshot: Path | None = None):
    """(DOM text or "", console messages) of ``page`` loaded in headless Chromium."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    action = [f"--screenshot={screenshot}", "--window-size=800,600"] if screenshot else ["--dump-dom"]
    url = page.resolve().as_uri() + fragment
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *action, url],
                            capture_output=True, text=True, timeout=40)
    messages = CONSOLE.findall(result.stderr)
    return result.stdout, messages


def page_errors(messages: list[str]) -> list[str]:
    return [m for m in messages if not any(notice in m for notice in BROWSER_NOTICES)]


def status_of(dom: str) -> str:
    match = STATUS.search(dom)
    assert match, "no status element in the DOM"
    return match.group(1)


def striped_scene(n=30000, seed=0):
    """A 6 x 4 m room whose three x-stripes are predicted chair / table / background."""
    rng = np.random.default_rng(seed)
    coord = rng.uniform([0, 0, 0], [6, 4, 2.5], (n, 3)).astype(np.float32)
    prediction = np.minimum(coord[:, 0] // 2, 2).astype(np.int64)
    probabilities = np.eye(3, dtype=np.float32)[prediction] * 0.8 + 0.2 / 3
    truth = np.where(coord[:, 1] < 1.0, -1, prediction)
    return ViewScene("stripes", coord, prediction=prediction, ground_truth=truth, probabilities=probabilities)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "view.html"
    path.write_text(build_html(ViewDocument("stripes", NAMES, [striped_scene()])), encoding="utf-8")
    return path


def colour_counts(png: Path) -> dict[tuple, int]:
    import matplotlib.image

    image = np.rint(matplotlib.image.imread(str(png))[..., :3] * 255).astype(np.int64)
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    return {tuple(int(v) for v in c): int(k) for c, k in zip(colours, counts)}


def near(counts: dict[tuple, int], colour, tolerance=3) -> int:
    colour = [int(v) for v in colour]
    return sum(k for c, k in counts.items() if max(abs(a - b) for a, b in zip(c, colour)) <= tolerance)


@pytest.mark.parametrize("fragment, renderer", [("", r"(webgl|2d)"), ("#renderer=2d", "2d")])
def test_page_renders_all_points_without_console_errors(tmp_path, page, fragment, renderer):
    dom, messages = run_chromium(tmp_path, page, fragment)
    assert re.fullmatch(rf"rendered 30000 points \({renderer}\)", status_of(dom)), status_of(dom)
    assert page_errors(messages) == []
    assert "<option" in dom and ">table</span>" in dom  # class picker and legend were built


@pytest.mark.parametrize("fragment", ["", "#renderer=2d"])
def test_screenshot_shows_the_class_colours(tmp_path, page, fragment):
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, page, fragment, screenshot=shot)
    counts = colour_counts(shot)
    total = sum(counts.values())
    assert total == 800 * 600
    for colour in class_colors(3):
        assert near(counts, colour) > 1500, (colour, near(counts, colour))  # each stripe drawn, not just its legend
    assert near(counts, BACKGROUND) < 0.95 * total


def test_ground_truth_mode_shows_unlabelled_points(tmp_path, page):
    shot = tmp_path / "gt.png"
    run_chromium(tmp_path, page, "#renderer=2d&mode=ground_truth", screenshot=shot)
    counts = colour_counts(shot)
    assert near(counts, UNLABELLED_COLOR, 1) > 1000
    assert near(counts, class_colors(3)[0]) > 1000


def test_errors_reach_the_status_element(tmp_path, page):
    dom, _ = run_chromium(tmp_path, page, "#mode=model")  # this scan has no source models
    assert status_of(dom).startswith("error: colour mode model is not available")
    broken = tmp_path / "broken.html"
    text = page.read_text(encoding="utf-8")
    broken.write_text(re.sub(r'"probability":"[^"]*"', '"probability":"AAAA"', text, count=1), encoding="utf-8")
    dom, _ = run_chromium(tmp_path, broken)
    assert status_of(dom) == "error: scene stripes: probability layer has the wrong size"


def test_console_capture_sees_page_errors(tmp_path):
    noisy = tmp_path / "noisy.html"
    noisy.write_text('<html><body><script>console.error("viewer-test-error"); missingFunction();</script>'
                     '</body></html>')
    _, messages = run_chromium(tmp_path, noisy)
    errors = page_errors(messages)
    assert any("viewer-test-error" in m for m in errors) and any("missingFunction" in m for m in errors)


def test_sample_page_colours_points_by_source_model(tmp_path):
    from cad2scan.viewer.page import MODEL_COLORS, SCENE_COLOR

    rng = np.random.default_rng(1)
    coord = rng.uniform([0, 0, 0], [6, 4, 2.5], (20000, 3)).astype(np.float32)
    model_id = np.where(coord[:, 0] < 4, (coord[:, 0] // 2).astype(np.int64), -1)  # models 0, 1; scan beyond x=4
    scene = ViewScene("sample 0", coord, ground_truth=np.where(model_id >= 0, model_id, -1), model_id=model_id,
                      model_labels={0: 0, 1: 1}, is_synthetic=model_id >= 0)
    page = tmp_path / "samples.html"
    page.write_text(build_html(ViewDocument("samples", NAMES, [scene, scene], mode="model")), encoding="utf-8")
    dom, messages = run_chromium(tmp_path, page, "#renderer=2d&scene=1")
    assert status_of(dom) == "rendered 20000 points (2d)" and page_errors(messages) == []
    assert "model 1: table" in dom and "sample 0</option>" in dom
    shot = tmp_path / "models.png"
    run_chromium(tmp_path, page, "#renderer=2d", screenshot=shot)
    counts = colour_counts(shot)
    for colour in (MODEL_COLORS[0], MODEL_COLORS[1], SCENE_COLOR):
        assert near(counts, colour) > 1500, colour
