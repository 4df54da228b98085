"""The test-run folder and its page: run.json, per-type metrics, curves, worst cases,
rebuilding with ``defectkit report``, the page size for a 100-image test set, and the
benchmark page."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from defectkit import metrics as M
from defectkit.data import load_dataset, make_demo_dataset
from defectkit.data.batches import load_masks
from defectkit.data.preprocess import Preprocess
from defectkit.deploy.thresholds import Thresholds
from defectkit.engine.benchmark_page import benchmark_page_from_dir, benchmark_view, write_benchmark_page
from defectkit.engine.breakdown import per_defect_type, recall_at
from defectkit.engine.curves import thin_curve
from defectkit.engine.evaluate import EvaluationResult
from defectkit.engine.report import run_view, slider_positions, write_page, write_run_report
from defectkit.engine.run_record import RUN_VERSION, deployed_threshold, read_run
from defectkit.engine.test_run import run_test, write_test_run
from defectkit.engine.worst_cases import worst_cases
from defectkit.models import PatchCore

SECTIONS = ("metrics", "threshold", "curves", "galleries", "run", "per-image")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runreport")
    data = load_dataset(make_demo_dataset(root / "data", seed=2, n_train=6, n_test_good=4, n_test_defect=6, size=64))
    model = PatchCore(image_size=64, device="cpu", use_cache=False, seed=0).fit(data, progress=False)
    model.thresholds_ = None  # the page without a stored threshold (the stored one is tested below)
    run = run_test(model, data.test, root / "run", "tiny <run>", extra={"data": str(data.root)}, progress=False)
    return root, data, model, run


# ------------------------------------------------------------------------ the folder
def test_run_folder_files_and_record(tiny):
    root, data, model, run = tiny
    out = run.report.parent
    for name in ("per_image.csv", "metrics.json", "run.json", "report.html", "report.md"):
        assert (out / name).is_file(), name
    rec = json.loads((out / "run.json").read_text())
    assert rec["format"] == "defectkit-run" and rec["version"] == RUN_VERSION and rec["n_images"] == len(data.test)
    assert rec["threshold"]["origin"] == "test_f1_max"
    assert rec["threshold"]["image"] == run.result.metrics["image_f1_threshold"]
    assert set(rec["per_defect_type"]) == {s.defect_type for s in data.test if s.label}
    assert rec["params"]["model"]["method"] == "patchcore" and rec["params"]["versions"]["torch_version"]
    assert rec["params"]["machine"] and rec["params"]["data"]["test_images"] == len(data.test)
    for kind in ("false_alarms", "escapes", "examples"):
        for it in rec["overlays"][kind]["items"]:
            assert (out / it["overlay"]).is_file()


def test_per_type_metrics_are_each_type_against_all_good_images(tiny):
    _, data, _, run = tiny
    rec = json.loads((run.report.parent / "run.json").read_text())
    labels = np.array([s.label for s in data.test])
    kinds = np.array([s.defect_type for s in data.test])
    scores = run.result.scores
    for t, m in rec["per_defect_type"].items():
        sel = (labels == 0) | (kinds == t)
        assert m["n_images"] == int(np.sum(kinds == t))
        assert m["image_auroc"] == pytest.approx(roc_auc_score(labels[sel], scores[sel]), abs=1e-12)
        masks, maps = run.result.masks[sel], run.result.maps[sel]
        assert m["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-9)
        assert m["aupro"] == pytest.approx(M.aupro(masks, maps), abs=1e-12)


def test_per_defect_type_skips_pixel_metrics_without_masks_and_recall_at():
    labels = [0, 0, 1, 1, 1]
    scores = [0.1, 0.4, 0.3, 0.9, 0.8]
    types = ["good", "good", "a", "a", "b"]
    out = per_defect_type(labels, scores, types)
    assert list(out) == ["a", "b"] and out["a"]["image_auroc"] == pytest.approx(0.75)  # 3 of 4 (a, good) pairs
    assert "pixel_auroc" not in out["a"]
    masks = [np.zeros((4, 4), bool), np.zeros((4, 4), bool), None, None, np.eye(4, dtype=bool)]
    maps = np.random.default_rng(0).random((5, 4, 4))
    out = per_defect_type(labels, scores, types, masks, maps)
    assert "pixel_auroc" not in out["a"] and "aupro" in out["b"]  # "a" has no mask at all
    assert recall_at(labels, scores, types, 0.35) == {"a": 0.5, "b": 1.0, "good": 0.5}
    with pytest.raises(ValueError, match="good"):
        per_defect_type([1, 1], [0.1, 0.2], ["a", "a"])


def test_stored_pixel_curves_are_points_of_the_exact_curves(tiny):
    _, _, _, run = tiny
    rec = json.loads((run.report.parent / "run.json").read_text())
    fpr, tpr, _ = M.roc_curve(run.result.masks, run.result.maps)
    exact = {(round(a, 6), round(b, 6)) for a, b in zip(fpr, tpr)}
    roc = rec["pixel_curves"]["roc"]
    assert all((a, b) in exact for a, b in zip(roc["fpr"], roc["tpr"]))
    assert roc["fpr"][0] == 0 and roc["fpr"][-1] == 1 and len(roc["fpr"]) < len(fpr)
    pro = rec["pixel_curves"]["pro"]
    assert np.all(np.diff(pro["fpr"]) >= 0) and pro["pro"][-1] == pytest.approx(1.0)


def test_thin_curve_stays_within_its_step():
    rng = np.random.default_rng(1)
    x = np.sort(rng.random(20000))
    y = np.sqrt(x)
    tx, ty = thin_curve(x, y, step=0.01, max_points=5000)
    assert tx[0] == x[0] and tx[-1] == x[-1] and len(tx) <= 2 / 0.01 + 2
    # every exact point is within one step (L1) of the thinned polyline's vertices before it
    idx = np.searchsorted(x, tx)
    for a, b in zip(idx[:-1], idx[1:]):
        seg = np.abs(x[a:b] - x[a]) + np.abs(y[a:b] - y[a])
        assert seg.max() <= 0.01 + 1e-12
    tx2, _ = thin_curve(x, y, step=1e-6, max_points=300)
    assert len(tx2) <= 300
    with pytest.raises(ValueError):
        thin_curve([0, 1], [0])


def test_worst_cases_at_a_threshold():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.9, 0.2, 0.6, 0.1, 0.5, 0.95]
    w = worst_cases(labels, scores, 0.55, limit=5)
    assert w["false_alarms"] == {"indices": [0, 2], "n": 2, "nearest": False}
    assert w["escapes"] == {"indices": [3, 4], "n": 2, "nearest": False}
    w = worst_cases(labels, scores, 0.05, limit=1)
    assert w["escapes"] == {"indices": [3], "n": 0, "nearest": True}  # none: the closest one instead
    assert w["false_alarms"] == {"indices": [0], "n": 3, "nearest": False}


def test_deployed_threshold_prefers_the_model_and_says_so():
    metrics = {"image_f1_threshold": 2.5}
    assert deployed_threshold(None, metrics)["origin"] == "test_f1_max"
    t = deployed_threshold(Thresholds(image=1.25, rule="fpr", fpr=0.02, source="12 held-out normals"), metrics)
    assert t["image"] == 1.25 and t["origin"] == "model" and t["fpr"] == 0.02
    assert deployed_threshold({"image": 3.0, "rule": "user"}, metrics)["rule"] == "user"


def test_slider_positions_cover_the_scores_the_start_and_above():
    pos = slider_positions([3.0, 1.0, 2.0, 2.0], 1.5)
    assert pos[:4] == [1.0, 1.5, 2.0, 3.0] and len(pos) == 5 and pos[4] > 3.0


# -------------------------------------------------------------------------- the page
def test_page_sections_data_and_self_containment(tiny):
    _, data, _, run = tiny
    html = run.report.read_text()
    for sid in SECTIONS:
        assert f'id="{sid}"' in html, sid
    for pid in ("plot-histogram", "plot-roc", "plot-pr", "plot-pro"):
        assert f'id="{pid}"' in html
    assert "tiny &lt;run&gt;" in html and "display only" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing loaded from elsewhere
    assert html.count("data:image/jpeg;base64,") == sum(
        len(json.loads((run.report.parent / "run.json").read_text())["overlays"][k]["items"])
        for k in ("false_alarms", "escapes", "examples")
    )
    blob = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', html, re.S).group(1)
    d = json.loads(blob)
    assert d["scores"] == [r["score"] for r in run.result.rows] and len(d["labels"]) == len(data.test)
    md = (run.report.parent / "report.md").read_text()
    assert "## Metrics" in md and "false alarms" in md and "escapes" in md and "overlays/" in md


def test_view_recall_and_counts_match_python(tiny):
    _, data, _, run = tiny
    view = run_view(read_run(run.report.parent))
    labels = np.array([s.label for s in data.test])
    t0 = view["threshold"]["image"]
    assert view["confusion"] == M.confusion_at(labels, run.result.scores, t0)
    kinds = np.array([s.defect_type for s in data.test])
    for row in view["metric_rows"][1:]:
        sel = kinds == row["name"]
        assert row["recall"] == pytest.approx(np.mean(run.result.scores[sel] >= t0))


def test_report_rebuilds_the_same_page_from_the_folder_alone(tiny, tmp_path):
    _, _, _, run = tiny
    moved = tmp_path / "moved"
    shutil.copytree(run.report.parent, moved)
    first = (moved / "report.html").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        write_page(moved)
    assert write_page(moved, overwrite=True) == moved / "report.html"
    assert (moved / "report.html").read_text() == first  # same files, same page
    other = write_page(moved, tmp_path / "elsewhere" / "page.html")
    assert 'href="../moved/overlays/' in other.read_text() and (tmp_path / "elsewhere" / "page.md").is_file()
    (moved / "overlays" / sorted(p.name for p in (moved / "overlays").iterdir())[0]).unlink()
    assert "overlay file missing" in write_run_report(moved).read_text()


def test_a_stored_threshold_starts_the_page(tiny, tmp_path):
    root, data, model, run = tiny
    scores = run.result.scores
    model.thresholds_ = Thresholds(image=float(np.median(scores)), rule="fpr", fpr=0.01, source="validation")
    stale = tmp_path / "stored" / "overlays" / "escape_17_hole_999.png"  # left by an earlier run in the folder
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    try:
        stored = write_test_run(model, run.result, tmp_path / "stored", "stored")
    finally:
        model.thresholds_ = None
    rec = json.loads((tmp_path / "stored" / "run.json").read_text())
    assert not stale.exists()
    assert rec["threshold"]["origin"] == "model" and rec["threshold"]["image"] == float(np.median(scores))
    html = stored.report.read_text()
    assert (
        "stored threshold" in html
        and "1 % of the held-out normal images" in html
        and "display only" not in html.split('id="threshold-origin"')[1][:400]
    )
    fa = rec["overlays"]["false_alarms"]["items"]
    good_scores = sorted((s for s, label in zip(scores, [x.label for x in data.test]) if label == 0), reverse=True)
    assert [it["score"] for it in fa] == [s for s in good_scores if s >= np.median(scores)][: len(fa)]


def test_read_run_errors_name_the_file(tiny, tmp_path):
    _, _, _, run = tiny
    with pytest.raises(FileNotFoundError, match="run.json not found"):
        read_run(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(run.report.parent, bad)
    rec = json.loads((bad / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps({**rec, "version": RUN_VERSION + 1}))
    with pytest.raises(ValueError, match=r"run.json has run-record version"):
        read_run(bad)
    (bad / "run.json").write_text(json.dumps(rec))
    lines = (bad / "per_image.csv").read_text().splitlines()
    (bad / "per_image.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="per_image.csv has"):
        read_run(bad)
    (bad / "per_image.csv").write_text("\n".join(lines[:2] + [lines[2].replace(",0,", ",x,", 1)]) + "\n")
    with pytest.raises(ValueError, match="per_image.csv, line"):
        read_run(bad)
    with pytest.raises(NotADirectoryError):
        read_run(bad / "run.json")


class _RecordOnlyModel:
    """What write_test_run reads from a model (no prediction happens there)."""

    method = "patchcore"
    thresholds_ = None
    fit_info_ = {}
    device_ = "cpu"

    def __init__(self, size):
        self.preprocess = Preprocess(size)

    def get_params(self):
        return {"backbone": "efficientnet_lite0", "image_size": self.preprocess.image_size, "seed": 0}


def _noise_test_set(root: Path, n_good: int, n_bad: int, size: int):
    """Test images of pure noise (what JPEG compresses worst) with rectangular defect masks."""
    from PIL import Image

    from defectkit.data.samples import Sample

    rng = np.random.default_rng(0)
    samples = []
    for i in range(n_good + n_bad):
        kind = "good" if i < n_good else ("crack", "hole", "scratch")[i % 3]
        img = root / "test" / kind / f"{i:03d}.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(img, compress_level=1)
        mask = None
        if kind != "good":
            m = np.zeros((size, size), np.uint8)
            y, x = rng.integers(0, size - 40, 2)
            m[y : y + rng.integers(5, 40), x : x + rng.integers(5, 40)] = 255
            mask = root / "ground_truth" / kind / f"{i:03d}_mask.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(mask)
        samples.append(Sample(img, int(kind != "good"), kind, mask))
    return samples


def test_page_stays_under_5_mb_for_100_test_images(tmp_path):
    """100 test images of noise at 256 px, every pixel score distinct: the largest overlays and curves.

    The overlays are drawn at 256 px, as for a default model; the maps are scored at 64 px
    to keep the test fast (the stored pixel curves are capped in points, so a finer map
    would not make the page larger)."""
    samples = _noise_test_set(tmp_path / "data", 40, 60, 256)
    masks = load_masks(samples, Preprocess(64))[:, 0].numpy().astype(bool)
    rng = np.random.default_rng(0)
    maps = (rng.random(masks.shape, dtype=np.float32) + 0.8 * masks).astype(np.float32)
    labels = np.array([s.label for s in samples])
    scores = maps.reshape(100, -1).max(axis=1).astype(np.float64) + 0.2 * labels * rng.random(100)
    rows = [
        {"path": str(s.path), "defect_type": s.defect_type, "label": s.label, "score": float(sc), "predicted_label": 0}
        for s, sc in zip(samples, scores)
    ]
    result = EvaluationResult(
        metrics=M.evaluate(labels, scores, masks, maps),
        rows=rows,
        samples=samples,
        scores=scores,
        maps=maps,
        masks=masks,
        infer_seconds=1.0,
        resolution=64,
        batch_size=8,
    )
    run = write_test_run(_RecordOnlyModel(256), result, tmp_path / "run", "size check", n_examples=6)
    size = run.report.stat().st_size
    assert 500_000 < size < 5 * 1024 * 1024, size
    assert run.report.read_text().count("data:image/jpeg;base64,") >= 12


# ------------------------------------------------------------------- benchmark page
def _rows():
    out = []
    for method in ("patchcore", "simplenet"):
        for cat in ("bottle", "metal_plate"):
            for seed in (0, 1, 2):
                out.append(
                    {
                        "method": method,
                        "variant": method,
                        "backbone": "efficientnet_lite0",
                        "category": cat,
                        "seed": seed,
                        "image_auroc": 0.9 + 0.01 * seed,
                        "pixel_auroc": 0.95,
                        "aupro": 0.8,
                        "pixel_ap": 0.5,
                        "image_f1_max": 0.9,
                        "pixel_f1_max": 0.5,
                        "train_seconds": 10.0 + seed,
                        "infer_ms_per_image": 5.0,
                        "peak_rss_mb": 100.0,
                        "throughput_img_s": 20.0 * (1 + seed),
                        "run_page": f"runs/{method}-{cat}-seed{seed}/report.html",
                    }
                )
    return out


def test_benchmark_page_tables_charts_and_links(tmp_path):
    rows = _rows()
    (tmp_path / "runs" / "patchcore-bottle-seed0").mkdir(parents=True)
    (tmp_path / "runs" / "patchcore-bottle-seed0" / "report.html").write_text("<html></html>")
    env = {"machine": "test machine", "torch_version": "2.x", "defectkit_version": "0.x"}
    view = benchmark_view(rows, env, [0, 1, 2], "defectkit benchmark ...", tmp_path)
    assert view["categories"] == ["bottle", "metal_plate", "mean"]
    train = next(c for c in view["charts"] if c["id"] == "train-seconds")
    assert train["series"]["patchcore"][0] == [pytest.approx(11.0)] * 2 and train["series"]["patchcore"][1][
        0
    ] == pytest.approx(1.0)
    thr = next(c for c in view["charts"] if c["id"] == "throughput-img-s")
    assert thr["series"]["simplenet"][0][0] == pytest.approx(40.0)
    path = write_benchmark_page(tmp_path, rows, env, [0, 1, 2], "defectkit benchmark ...")
    html = path.read_text()
    assert "91.0 ± 1.0" in html  # I-AUROC mean ± std over seeds 0.90, 0.91, 0.92
    assert html.count("run page</a>") == 1 and 'href="runs/patchcore-bottle-seed0/report.html"' in html
    assert 'id="plot-train-seconds"' in html and 'id="plot-throughput-img-s"' in html and "test machine" in html
    (tmp_path / "results.json").write_text(
        json.dumps({"rows": rows, "seeds": [0, 1, 2], "environment": env, "command": "cmd"})
    )
    with pytest.raises(FileExistsError, match="--force"):
        benchmark_page_from_dir(tmp_path)
    assert write_page(tmp_path, overwrite=True) == path
    (tmp_path / "results.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="results.json holds no result rows"):
        benchmark_page_from_dir(tmp_path, overwrite=True)


def test_run_pages_need_an_output_folder(tmp_path):
    from defectkit.engine.benchmark import run_benchmark

    data = make_demo_dataset(tmp_path / "data", seed=1, n_train=2, n_test_good=1, n_test_defect=3, size=64)
    with pytest.raises(ValueError, match="output folder"):
        run_benchmark(["patchcore"], [data], seeds=[0], image_size=64, device="cpu", progress=False, run_pages=True)
