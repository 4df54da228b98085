"""The test-run page in a real browser (headless Chromium driven by Playwright).

Checks what a unit test of the HTML text cannot: the page runs without console errors
and without loading anything from the network, it draws (the screenshot is not blank),
every plot is there with a real size, the overlay images decode, and the threshold
slider changes the confusion counts, rates and per-type recall to the values computed
here in Python from per_image.csv. Skipped when Chromium or Playwright is missing
(`.ci/run` installs the Debian package `chromium`).
"""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from defectkit.data import load_dataset, make_demo_dataset
from defectkit.deploy.thresholds import Thresholds
from defectkit.engine.test_run import run_test
from defectkit.metrics import confusion_at
from defectkit.models import PatchCore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian package `chromium`; .ci/run installs it): "
    "the browser test of the report page is skipped",
)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -c constraints.txt 'defectkit[test]')"
)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLOTS = ("plot-histogram", "plot-roc", "plot-pr", "plot-pro")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of one tiny PatchCore: without a stored threshold, and with one."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser")
    data = load_dataset(make_demo_dataset(root / "data", seed=3, n_train=6, n_test_good=5, n_test_defect=7, size=64))
    model = PatchCore(image_size=64, device="cpu", use_cache=False, seed=0).fit(data, progress=False)
    model.thresholds_ = None  # first the page of a model that stores no threshold
    plain = run_test(model, data.test, root / "plain", "browser test run", extra={"data": "demo"}, progress=False)
    scores = np.array([r["score"] for r in plain.result.rows])
    model.thresholds_ = Thresholds(
        image=float(np.quantile(scores, 0.55)), rule="fpr", fpr=0.01, source="held-out normal images"
    )
    stored = run_test(
        model, data.test, root / "stored", "browser test run, stored threshold", extra={"data": "demo"}, progress=False
    )
    return plain, stored


def read_rows(run_dir: Path):
    with open(run_dir / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    return labels, scores, [r["defect_type"] for r in rows]


def expected_positions(scores, start):
    above = np.nextafter(max(scores.max(), start), np.inf)
    return np.unique(np.concatenate((scores, [start, above])))


def pct(a, b):
    return f"{100 * a / b:.1f} %"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: (
            problems.append(f"request: {r.url}")
            if not (r.url.startswith("file:") or r.url.startswith("data:"))
            else None
        ),
    )
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, problems


def check_counts(page, labels, scores, types, threshold):
    c = confusion_at(labels, scores, threshold)
    shown = {k: int(page.text_content(f"#count-{k}")) for k in ("tp", "fn", "fp", "tn")}
    assert shown == c
    assert page.text_content("#rate-escape") == pct(c["fn"], c["fn"] + c["tp"])
    assert page.text_content("#rate-false-alarm") == pct(c["fp"], c["fp"] + c["tn"])
    kinds = np.array(types)
    for t in sorted(set(kinds[labels == 1])):
        sel = (labels == 1) & (kinds == t)
        cell = page.locator(f'#metrics-table [data-recall-type="{t}"]')
        assert cell.text_content() == pct(int(np.sum(scores[sel] >= threshold)), int(sel.sum()))
    return c


@pytest.mark.parametrize("which", ["plain", "stored"])
def test_page_in_chromium(runs, browser, which):
    from PIL import Image

    run = runs[0] if which == "plain" else runs[1]
    run_dir = run.report.parent
    record = json.loads((run_dir / "run.json").read_text())
    labels, scores, types = read_rows(run_dir)
    start = float(record["threshold"]["image"])
    positions = expected_positions(scores, start)
    page, problems = open_page(browser, run.report)

    # every plot is an inline SVG with a real size and drawn content
    for pid in PLOTS:
        svg = page.locator(f"#{pid} svg")
        assert svg.count() == 1, pid
        box = svg.bounding_box()
        assert box["width"] > 250 and box["height"] > 150, (pid, box)
        assert page.locator(f"#{pid} svg path").count() > 10, pid
    # overlays decode (data URIs) and are shown
    imgs = page.locator("#galleries img")
    assert imgs.count() >= 3
    assert all(w > 0 for w in imgs.evaluate_all("els => els.map(e => e.naturalWidth)"))

    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    a = np.asarray(shot).astype(float)
    assert shot.height > 1500
    assert a.std() > 20 and np.mean(a.min(axis=2) < 200) > 0.03  # not blank: a tenth of it has ink
    assert len(np.unique(a.reshape(-1, 3)[::7], axis=0)) > 100

    # the text says where the start threshold comes from
    origin = page.text_content("#threshold-origin")
    if which == "plain":
        assert record["threshold"]["origin"] == "test_f1_max" and "display only" in origin
        assert start == pytest.approx(record["metrics"]["image_f1_threshold"])
    else:
        assert record["threshold"]["origin"] == "model" and "stored threshold" in origin

    # the slider: starts at the start threshold, steps over the observed scores
    slider = page.locator("#threshold-slider")
    k0 = int(np.flatnonzero(positions == start)[0])
    assert int(slider.get_attribute("max")) == len(positions) - 1
    assert int(slider.input_value()) == k0
    assert float(page.get_attribute("#threshold-value", "data-threshold")) == start
    first = check_counts(page, labels, scores, types, start)
    seen = {tuple(first.values())}
    for k in (0, len(positions) // 3, len(positions) - 2, len(positions) - 1):
        slider.fill(str(k))
        assert float(page.get_attribute("#threshold-value", "data-threshold")) == positions[k]
        seen.add(tuple(check_counts(page, labels, scores, types, positions[k]).values()))
    assert len(seen) >= 3  # moving it really changed the counts
    assert page.text_content("#count-tp") == "0" and page.text_content("#count-fp") == "0"  # above every score
    slider.focus()
    page.keyboard.press("Home")
    check_counts(page, labels, scores, types, positions[0])
    page.keyboard.press("ArrowRight")
    assert int(slider.input_value()) == 1
    check_counts(page, labels, scores, types, positions[1])
    page.click("#threshold-reset")
    assert int(slider.input_value()) == k0
    check_counts(page, labels, scores, types, start)
    # the histogram marker follows the slider
    left0 = page.eval_on_selector("#histogram-marker", "e => e.getBoundingClientRect().left")
    slider.fill(str(len(positions) - 1))
    assert page.eval_on_selector("#histogram-marker", "e => e.getBoundingClientRect().left") > left0
    assert problems == []
    page.close()
