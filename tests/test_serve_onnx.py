"""``defectkit serve`` on an exported ``.onnx`` model: every endpoint answers what ``predict --model
M.onnx`` writes for the same files, ``GET /model`` describes the file's metadata, and the service
runs without importing torch.

The model is a PatchCore on a generated 64 px category, exported once per session
(tests/onnx_models.py), so nothing here needs the shared data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient  # noqa: E402
from onnx_models import tiny_onnx_model  # noqa: E402

from defectkit.cli import main  # noqa: E402
from defectkit.deploy.loading import load_scorer  # noqa: E402
from defectkit.serve.app import create_app  # noqa: E402
from defectkit.serve.settings import ServeSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: the fields a service record shares with a predict record (``normalized_score`` is predict's ``normalised_score``)
SHARED = ("score", "label", "threshold", "pixel_threshold", "boxes", "map_size")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx_model(tmp_path_factory)


@pytest.fixture(scope="module")
def images(model):
    return sorted((model[0] / "test").glob("*/*.png"))


@pytest.fixture(scope="module")
def predicted(model, images, tmp_path_factory):
    """``defectkit predict --model parts.onnx`` on the test images: {file name: record}."""
    out = tmp_path_factory.mktemp("onnx-predict") / "run"
    assert (
        main(["predict", "--model", str(model[1]), "--input", *map(str, images), "--out", str(out), "--no-overlays"])
        == 0
    )
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(images) and {r["label"] for r in records} <= {"good", "defect"}
    return {r["file"]: r for r in records}


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(load_scorer(model[1]), ServeSettings(model_name="parts"))) as c:
        yield c


def assert_same_record(served: dict, recorded: dict) -> None:
    for key in SHARED:
        assert served[key] == recorded[key], (key, served[key], recorded[key])
    assert served["normalized_score"] == recorded["normalised_score"]


def test_predict_and_batch_answer_what_predict_writes(client, images, predicted):
    for path in images:
        r = client.post("/predict", files={"file": (path.name, path.read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        assert_same_record(r.json(), predicted[str(path)])
    r = client.post("/predict/batch", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in images])
    assert r.status_code == 200, r.text
    assert [b["file"] for b in r.json()] == [p.name for p in images]
    for body, path in zip(r.json(), images):
        assert_same_record(body, predicted[str(path)])


def test_v2_infer_scores_like_predict(client, images, predicted):
    arrays = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])
    request = {
        "inputs": [{"name": "image", "shape": list(arrays.shape), "datatype": "UINT8", "data": arrays.ravel().tolist()}]
    }
    r = client.post("/v2/models/parts/infer", json=request)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["score"]["data"] == pytest.approx([predicted[str(p)]["score"] for p in images], rel=1e-6)
    assert out["label"]["data"] == [predicted[str(p)]["label"] for p in images]


def test_model_describes_the_onnx_metadata(client, model):
    info = client.get("/model").json()
    scorer = load_scorer(model[1])
    meta = scorer.metadata
    assert info["format"] == "onnx" and info["method"] == "patchcore" == meta.method
    assert info["backbone"] == meta.backbone["name"] == "efficientnet_lite0"
    assert (info["image_size"], info["output_size"], info["resize"]) == (64, 64, "square")
    assert info["thresholds"]["image"] == meta.thresholds.image and info["thresholds"]["rule"] == meta.thresholds.rule
    assert info["thresholds_chosen"] == meta.thresholds.describe() and "held-out" in info["thresholds_chosen"]
    assert info["exported_by_defectkit"] == meta.defectkit_version and info["defectkit_version"]


def test_uploads_too_small_or_malformed_are_left_out_with_a_reason(model):
    scorer = load_scorer(model[1])
    good = np.asarray(Image.open(sorted((model[0] / "test").glob("*/*.png"))[0]).convert("RGB"))
    batch, kept, errors = scorer.load_arrays([np.zeros((8, 8, 3), np.uint8), good, np.zeros((64, 64), np.uint8)])
    assert kept == [1] and len(batch) == 1 and [i for i, _ in errors] == [0, 2]
    assert "at least" in errors[0][1] and "HxWx3" in errors[1][1]
    file_batch, _, _ = scorer.load_batch(sorted((model[0] / "test").glob("*/*.png"))[:1])
    assert np.array_equal(batch.images, file_batch.images) and batch.boxes == file_batch.boxes


def test_serving_an_onnx_model_imports_no_torch(model, images, predicted):
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from defectkit.deploy.loading import load_scorer\n"
        "from defectkit.serve.app import create_app\n"
        "from defectkit.serve.settings import ServeSettings\n"
        f"app = create_app(load_scorer({str(model[1])!r}), ServeSettings(model_name='parts'))\n"
        "with TestClient(app) as c:\n"
        f"    r = c.post('/predict', files={{'file': ('x.png', open({str(images[0])!r}, 'rb').read(), 'image/png')}})\n"
        "    assert r.status_code == 200, r.text\n"
        "    assert c.get('/model').json()['format'] == 'onnx'\n"
        "print(r.json()['score'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) == predicted[str(images[0])]["score"]
