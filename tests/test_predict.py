"""Predictions a line can use: records, boxes, masks, overlays, streaming, inputs and output folders.

The engine only talks to a Scorer, so most tests use a small numpy scorer (its map is
the image's red channel) whose boxes and labels are known exactly; no torch needed.
"""

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectkit.deploy.thresholds import Thresholds, calibrate
from defectkit.engine.inputs import expand_inputs, left_out_line
from defectkit.engine.predict import CSV_COLUMNS, predict_files, resolve_thresholds
from defectkit.utils.outputs import MANIFEST, OutputDir

SIZE = 16


class RedScorer:
    """Map = red channel / 255 at SIZE x SIZE; image score = map maximum."""

    method = "red"
    output_size = SIZE

    def __init__(self, thresholds=None):
        self.thresholds = thresholds

    def load_batch(self, paths):
        arrays, ok, errors = [], [], []
        for p in paths:
            try:
                with Image.open(p) as im:
                    arrays.append(np.asarray(im.convert("RGB").resize((SIZE, SIZE)), dtype=np.uint8))
                ok.append(Path(p))
            except Exception as exc:  # noqa: BLE001 - a test double: any failure is "unreadable"
                errors.append((Path(p), f"cannot read: {type(exc).__name__}"))
        batch = np.stack(arrays) if arrays else np.zeros((0, SIZE, SIZE, 3), np.uint8)
        return batch, ok, errors

    def score(self, batch):
        maps = batch[..., 0].astype(np.float32) / 255.0
        return maps.reshape(len(maps), -1).max(axis=1), maps

    def display_images(self, batch):
        return list(batch)


def _image(path: Path, square=None, value=200):
    a = np.zeros((SIZE, SIZE, 3), np.uint8)
    if square is not None:
        y0, x0, y1, x1 = square
        a[y0:y1, x0:x1, 0] = value
    Image.fromarray(a).save(path)
    return path


THRESHOLDS = calibrate(np.linspace(0.0, 0.4, 50), np.full((2, SIZE, SIZE), 0.1), fpr=0.02, source="test normals")


def _run(inputs, out, thresholds=THRESHOLDS, **kw):
    with OutputDir.prepare(out, kw.pop("force", False)) as output:
        return predict_files(RedScorer(thresholds), inputs, output, thresholds, progress=False, **kw)


def _records(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_records_boxes_masks_and_overlays(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _image(src / "good.png")
    _image(src / "defect.png", square=(2, 3, 6, 9))  # rows 2..5, columns 3..8
    (src / "notes.png").write_text("not an image")
    out = tmp_path / "out"
    summary = _run(expand_inputs([str(src)]), out)
    assert (summary.n_good, summary.n_defect, summary.n_unreadable) == (1, 1, 1)
    recs = {Path(r["file"]).name: r for r in _records(out)}
    d, g, bad = recs["defect.png"], recs["good.png"], recs["notes.png"]
    assert d["label"] == "defect" and g["label"] == "good" and bad["label"] == "unreadable" and bad["error"]
    assert d["threshold"] == pytest.approx(THRESHOLDS.image)
    assert d["normalised_score"] > 0.5 > g["normalised_score"]
    assert d["boxes"] == [{"x0": 3, "y0": 2, "x1": 9, "y1": 6, "area": 24, "max_score": pytest.approx(200 / 255)}]
    assert d["map_size"] == SIZE and g["boxes"] == [] and g["mask"] is None
    mask = np.asarray(Image.open(out / d["mask"]))
    assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) == {0, 255} and (mask > 0).sum() == 24
    overlay = Image.open(out / d["overlay"])
    assert overlay.size == (SIZE, SIZE) and (out / g["overlay"]).is_file()
    # the defect contour is drawn in white on the overlay
    assert (np.asarray(overlay)[2, 3] == 255).all()
    # the CSV says the same, one row per entry
    import csv

    with open(out / "predictions.csv", newline="") as f:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    assert tuple(rows["defect.png"].keys()) == CSV_COLUMNS
    assert rows["defect.png"]["label"] == "defect" and rows["defect.png"]["n_boxes"] == "1"
    assert json.loads(rows["defect.png"]["boxes"])[0]["area"] == 24
    assert rows["notes.png"]["label"] == "unreadable" and rows["notes.png"]["score"] == ""


def test_without_thresholds_labels_are_empty_and_overlays_use_their_own_scale(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _image(src / "a.png", square=(0, 0, 4, 4))
    summary = _run(expand_inputs([str(src)]), tmp_path / "out", thresholds=None)
    assert summary.n_unlabelled == 1 and summary.n_good == summary.n_defect == 0
    assert "per image" in summary.colour_scale
    (rec,) = _records(tmp_path / "out")
    assert rec["label"] is None and rec["threshold"] is None and rec["normalised_score"] is None


def test_user_thresholds_override_and_nan_is_refused():
    th = resolve_thresholds(THRESHOLDS, image=0.9)
    assert th.image == 0.9 and th.pixel == THRESHOLDS.pixel and th.rule == "user"
    assert resolve_thresholds(None, image=0.5).stats == {}
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="finite"):
            resolve_thresholds(THRESHOLDS, image=bad)
        with pytest.raises(ValueError, match="finite"):
            resolve_thresholds(None, image=bad)
    with pytest.raises(ValueError, match="--threshold too"):
        resolve_thresholds(None, pixel=0.3)


def _peak_bytes(tmp_path: Path, n: int) -> int:
    """Peak traced memory of one run over ``n`` files (the input list is made beforehand)."""
    src = tmp_path / f"in{n}"
    src.mkdir()
    base = src / "000000.png"
    _image(base, square=(4, 4, 12, 12))
    for i in range(1, n):
        os.link(base, src / f"{i:06d}.png")  # n files on disk, cheap to make
    inputs = expand_inputs([str(src)])
    [str(p) for p in inputs.files]  # the input list's own strings exist before the run
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    _run(inputs, tmp_path / f"out{n}", overlays=True)
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    assert len(_records(tmp_path / f"out{n}")) == n
    return peak


def test_memory_does_not_grow_with_the_number_of_files(tmp_path):
    """10x the files, the same peak: nothing per file is kept (no global colour scale, no lists).

    Keeping each 16 x 16 map and image (as a min..max colour scale over the run needs)
    would add about 1.8 kB per file, 1.6 MB over the 900 extra files; the bound allows
    less than 0.3 kB per file, which Python's own free lists and caches stay under.
    """
    _peak_bytes(tmp_path, 40)  # warm-up: imports, caches, free lists
    small, large = _peak_bytes(tmp_path, 100), _peak_bytes(tmp_path, 1000)
    assert large - small < 250_000, (small, large)


def test_predict_engine_does_not_import_torch():
    code = (
        "import sys, defectkit.engine.predict, defectkit.engine.inputs, defectkit.deploy.loading; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- inputs: nothing left out silently
def test_left_out_entries_are_named_with_reasons(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _image(src / "a.png")
    _image(src / "sub" / "b.png")
    (src / ".DS_Store").write_text("x")
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")
    inputs = expand_inputs([str(src)])
    assert [p.name for p in inputs.files] == ["a.png"]
    reasons = {Path(n).name: r for n, r in inputs.left_out}
    assert reasons == {".DS_Store": "hidden file", "gone.png": "broken link", "sub": "folder; use --recursive"}
    line = left_out_line(inputs.left_out)
    assert (
        line.startswith("skipped 3: ") and "gone.png (broken link)" in line and "sub/ (folder; use --recursive)" in line
    )
    assert inputs.unreadable == [(f"{src}/gone.png", "broken link")]
    deep = expand_inputs([str(src)], recursive=True)
    assert [p.name for p in deep.files] == ["a.png", "b.png"] and deep.names == ["a", "sub_b"]


def test_output_names_are_unique(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        _image(tmp_path / folder / "img.png")
    _image(tmp_path / "x" / "img.jpg")
    inputs = expand_inputs([str(tmp_path / "x"), str(tmp_path / "y")])
    assert inputs.names == ["img", "img-2", "img-3"]


def test_the_output_folder_is_never_read_as_input(tmp_path):
    _image(tmp_path / "a.png")
    with pytest.raises(ValueError, match="also an input folder"):
        expand_inputs([str(tmp_path)], out=tmp_path)
    (tmp_path / "results").mkdir()
    inputs = expand_inputs([str(tmp_path)], recursive=True, out=tmp_path / "results")
    assert (f"{tmp_path}/results/", "the --out folder") in inputs.left_out


# ---------------------------------------------------------------------------- output folders: nothing overwritten or left stale
def test_non_empty_output_folder_needs_force_and_keeps_user_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        _image(src / f"{name}.png")
    out = tmp_path / "out"
    _run(expand_inputs([str(src)]), out)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png", "c.png"]
    (out / "my_notes.txt").write_text("mine")
    (src / "b.png").unlink()
    (src / "c.png").unlink()
    with pytest.raises(FileExistsError, match="--force"):
        _run(expand_inputs([str(src)]), out)
    _run(expand_inputs([str(src)]), out, force=True)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png"]  # no stale b, c
    assert (out / "my_notes.txt").read_text() == "mine"
    assert len(_records(out)) == 1


def test_manifest_entries_outside_the_folder_are_ignored(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / MANIFEST).write_text("../victim.txt\n/etc/passwd\n")
    OutputDir.prepare(out, force=True).close()
    assert victim.read_text() == "keep"


def test_unwritable_output_folder_fails_before_any_work(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot"):
            OutputDir.check(ro / "out")
    finally:
        ro.chmod(0o700)


def test_thresholds_record_keeps_its_fields():
    d = THRESHOLDS.to_dict()
    for key in ("image", "pixel", "rule", "fpr", "source", "normal_scores", "normal_pixel_quantiles", "stats"):
        assert key in d
    assert Thresholds.from_dict(d) == THRESHOLDS
