"""ONNX export and the torch-free runtime: parity at export, metadata, predict and threshold on .onnx.

One tiny PatchCore (64 px demo category) is trained and exported once per module through
the CLI; a SimpleNet with ``resize="keep"`` covers the generic graph and padded inputs.
Exports trace the whole model, so this file takes a few minutes on 2 CPU cores.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectkit.cli import main
from defectkit.data import MVTecCategory, make_demo_dataset
from defectkit.deploy.loading import load_scorer
from defectkit.deploy.onnx_scorer import OnnxScorer
from defectkit.deploy.scorer import TorchScorer
from defectkit.export import onnx_export
from defectkit.export.graph import TiledModelError, check_exportable
from defectkit.export.parity import PARITY_TOLERANCE, ParityError
from defectkit.models import load_model
from defectkit.models.factory import build_model

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

#: modules a torch-free install does not have: importing one fails as if it were absent
BLOCKER = """
import sys
BLOCK = {"torch", "safetensors", "sklearn", "matplotlib", "faiss", "onnxscript"}
class Blocker:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name.split(".")[0])
sys.meta_path.insert(0, Blocker())
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = make_demo_dataset(root / "data", n_train=8, n_test_good=2, n_test_defect=3, size=64)
    model = build_model("patchcore", {}, image_size=64, device="cpu", use_cache=False)
    model.fit(MVTecCategory(data), progress=False)
    pt = model.save(root / "model.pt")
    onnx_path = root / "model.onnx"
    assert main(["export", "--model", str(pt), "--out", str(onnx_path)]) == 0
    return root, data, pt, onnx_path


def _test_images(data: Path):
    return sorted((data / "test").rglob("*.png"))


# ---- export ----------------------------------------------------------------------------
def test_export_writes_one_graph_with_metadata_and_a_parity_record(exported):
    root, _, pt, onnx_path = exported
    model = load_model(pt, device="cpu")
    record = json.loads((root / "model.parity.json").read_text())
    assert record["holds"] is True and record["method"] == "patchcore"
    assert [b["batch_size"] for b in record["batches"]] == [1, 8]
    held_out = model.fit_info_["held_out_files"]
    assert record["images"] == held_out and "held-out" in record["image_source"]
    for b in record["batches"]:
        assert b["relative_score_diff"] <= PARITY_TOLERANCE and b["relative_map_diff"] <= PARITY_TOLERANCE
        assert b["label_mismatches"] == 0

    scorer = OnnxScorer(onnx_path)
    inputs = scorer.session.get_inputs()
    assert [i.name for i in inputs] == ["image"]
    assert isinstance(inputs[0].shape[0], str) and inputs[0].shape[1:] == [3, 64, 64]  # dynamic N
    assert [o.name for o in scorer.session.get_outputs()] == ["score", "anomaly_map"]
    props = scorer.session.get_modelmeta().custom_metadata_map
    assert props["defectkit.method"] == "patchcore" and props["defectkit.image_size"] == "64"
    assert props["defectkit.resize"] == "square" and props["defectkit.crop_size"] == "None"
    assert json.loads(props["defectkit.backbone"])["name"] == "efficientnet_lite0"
    assert float(props["defectkit.image_threshold"]) == model.thresholds_.image
    assert props["defectkit.thresholds_chosen"] == model.thresholds_.describe()
    assert scorer.thresholds == model.thresholds_


def test_runtime_scores_like_torch_at_another_batch_size(exported):
    _, data, pt, onnx_path = exported
    files = _test_images(data)
    model = load_model(pt, device="cpu")
    ref_scores, ref_maps = model.predict(files)
    scores, maps = OnnxScorer(onnx_path, batch_size=3).predict(files)
    scale = float(np.abs(ref_scores).max())
    assert np.abs(scores - ref_scores).max() <= PARITY_TOLERANCE * scale
    assert np.abs(maps - ref_maps).max() <= PARITY_TOLERANCE * scale
    t = model.thresholds_.image
    assert ((scores >= t) == (ref_scores >= t)).all()


def test_export_never_replaces_files_without_force(exported, capsys):
    root, _, pt, onnx_path = exported
    before = onnx_path.stat().st_mtime_ns
    assert main(["export", "--model", str(pt), "--out", str(onnx_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert onnx_path.stat().st_mtime_ns == before
    assert main(["export", "--model", str(onnx_path), "--out", str(root / "again.onnx")]) == 2
    assert "already an ONNX model" in capsys.readouterr().err


def test_failed_parity_names_the_numbers_and_writes_nothing(exported, monkeypatch):
    import onnx

    root, _, pt, onnx_path = exported
    monkeypatch.setattr(onnx_export, "onnx_graph", lambda model: onnx.load(str(onnx_path)))  # skip re-tracing
    out = root / "refused.onnx"
    with pytest.raises(ParityError, match=r"max \|score diff\| .* max \|map diff\|"):
        onnx_export.export_model(load_model(pt, device="cpu"), out, tolerance=-1.0)
    assert not out.exists() and not onnx_export.parity_path_for(out).exists()


def test_no_check_images_and_tiled_models_are_clear_errors(exported, tmp_path):
    _, _, pt, _ = exported
    model = load_model(pt, device="cpu")
    model.fit_info_.pop("held_out_files")
    with pytest.raises(ValueError, match="--check DIR"):
        onnx_export.export_model(model, tmp_path / "m.onnx")
    tiled = build_model("patchcore", {}, image_size=64, tile_size=64, device="cpu")
    tiled._fitted = True
    with pytest.raises(TiledModelError, match="tiled models are not exported"):
        check_exportable(tiled)


# ---- the runtime -----------------------------------------------------------------------
def test_predict_on_onnx_runs_without_torch_and_decides_like_torch(exported, tmp_path):
    _, data, pt, onnx_path = exported
    script = BLOCKER + (
        "from defectkit.cli import main\n"
        f"code = main(['predict', '--model', {str(onnx_path)!r}, '--input', {str(data / 'test')!r}, '--recursive',"
        f" '--out', {str(tmp_path / 'onnx')!r}])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (
        main(
            [
                "predict",
                "--model",
                str(pt),
                "--input",
                str(data / "test"),
                "--recursive",
                "--out",
                str(tmp_path / "torch"),
            ]
        )
        == 0
    )

    def records(folder):
        lines = (folder / "predictions.jsonl").read_text().splitlines()
        return {r["file"]: r for r in map(json.loads, lines)}

    onnx_records, torch_records = records(tmp_path / "onnx"), records(tmp_path / "torch")
    assert onnx_records.keys() == torch_records.keys() and len(onnx_records) == len(_test_images(data))
    for name, r in onnx_records.items():
        assert r["label"] == torch_records[name]["label"]
        assert r["score"] == pytest.approx(torch_records[name]["score"], rel=1e-4)


def test_threshold_rewrites_an_onnx_models_metadata(exported, tmp_path):
    _, _, pt, onnx_path = exported
    out = tmp_path / "strict.onnx"
    assert main(["threshold", "--model", str(onnx_path), "--fpr", "0.5", "--out", str(out)]) == 0
    model = load_model(pt, device="cpu")
    expected = model.calibrate(fpr=0.5)
    rethresholded = load_scorer(out)
    assert rethresholded.thresholds.image == pytest.approx(expected.image)
    assert rethresholded.thresholds.fpr == 0.5
    assert rethresholded.metadata.params["fpr"] == 0.5
    original = OnnxScorer(onnx_path)
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(rethresholded.run(x)[0], original.run(x)[0])  # the graph is untouched


def test_load_scorer_refuses_what_an_onnx_model_cannot_do(exported, tmp_path):
    _, _, _, onnx_path = exported
    with pytest.raises(ValueError, match="CPU"):
        load_scorer(onnx_path, device="cuda")
    with pytest.raises(ValueError, match="unknown runtime setting"):
        load_scorer(onnx_path, tile_size=3)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot be opened as an ONNX model"):
        load_scorer(broken)


def test_speed_measures_both_engines(exported, tmp_path):
    _, data, pt, onnx_path = exported
    out = tmp_path / "speed"
    assert (
        main(
            [
                "speed",
                "--model",
                str(onnx_path),
                "--torch-model",
                str(pt),
                "--input",
                str(data / "test" / "good"),
                "--repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "speed.json").read_text())
    engines = {e["engine"]: e for e in result["engines"]}
    assert set(engines) == {"onnxruntime", "torch"}
    for e in engines.values():
        assert e["graph_images_per_s"] > 0 and e["end_to_end_images_per_s"] > 0
        assert len(e["graph_passes"]) == 1 and len(e["end_to_end_passes"]) == 1
    assert result["ratios"]["graph_images_per_s"] > 0
    assert result["n_files"] == 2 and "load average" in (out / "speed.md").read_text().lower()


# ---- resize="keep": the padding mask is a graph input ---------------------------------------
def test_keep_aspect_model_exports_and_masks_padding_like_torch(tmp_path):
    data = make_demo_dataset(tmp_path / "data", n_train=8, n_test_good=2, n_test_defect=3, size=64)
    for p in data.rglob("*.png"):  # 64 x 32: half of every model input is padding
        resample = Image.Resampling.NEAREST if "ground_truth" in p.parts else Image.Resampling.BILINEAR
        Image.open(p).resize((64, 32), resample).save(p)
    model = build_model(
        "simplenet",
        {"epochs": 2, "feature_batch_size": 256},
        image_size=64,
        device="cpu",
        resize="keep",
        use_cache=False,
    ).fit(MVTecCategory(data), progress=False)
    result = onnx_export.export_model(model, tmp_path / "keep.onnx")
    assert result.parity.holds
    scorer = OnnxScorer(result.onnx_path)
    assert scorer.takes_valid and scorer.metadata.inputs == ["image", "valid"]
    files = _test_images(data)
    batch, ok, _ = scorer.load_batch(files)
    assert batch.padded
    scores, maps = scorer.score(batch)
    ref_scores, ref_maps = TorchScorer(model).score(model.load_inputs(files)[0])
    scale = float(np.abs(ref_scores).max())
    assert np.abs(scores - ref_scores).max() <= PARITY_TOLERANCE * scale
    assert np.abs(maps - ref_maps).max() <= PARITY_TOLERANCE * scale
    pad = ~batch.boxes[0].mask()
    assert np.allclose(maps[0][pad], maps[0][~pad].min())  # padding floored to the lowest real pixel
