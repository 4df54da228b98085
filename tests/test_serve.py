"""``defectkit serve``: answers, every malformed upload with its status (and the service still
answering afterwards), the KServe v2 endpoints from hand-built requests, the API key, metrics,
the access log, a full queue, dynamic batching and a graceful SIGTERM.

The model is a PatchCore trained on a generated 64 px category, so nothing here needs the
shared data; the load test with bottle images is tests/test_serve_load.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402

from defectkit.serve.app import create_app  # noqa: E402
from defectkit.serve.batcher import DynamicBatcher, QueueFull  # noqa: E402
from defectkit.serve.settings import ServeSettings  # noqa: E402


# ------------------------------------------------------------------------------ set-up
@pytest.fixture(scope="module")
def category(tmp_path_factory) -> Path:
    from defectkit.data import make_demo_dataset

    return make_demo_dataset(
        tmp_path_factory.mktemp("serve-data"), seed=0, n_train=6, n_test_good=1, n_test_defect=3, size=64
    )


@pytest.fixture(scope="module")
def model_file(category, tmp_path_factory) -> Path:
    from defectkit.data import load_dataset
    from defectkit.models.factory import build_model

    path = tmp_path_factory.mktemp("serve-model") / "parts.pt"
    model = build_model("patchcore", None, image_size=64, device="cpu", use_cache=False)
    model.fit(load_dataset(category), progress=False).save(path)
    return path


@pytest.fixture(scope="module")
def scorer(model_file):
    from defectkit.deploy.loading import load_scorer

    return load_scorer(model_file, device="cpu")


@pytest.fixture(scope="module")
def images(category):
    return sorted((category / "test").glob("*/*.png"))


@pytest.fixture
def client(scorer):
    with TestClient(create_app(scorer, ServeSettings(model_name="parts"))) as c:
        yield c


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A real, decodable 1-bit PNG of ``width`` x ``height`` black pixels: ~100 kB that would decode
    to 900 Mpx (2.7 GB as RGB). Compressed row by row, so making it costs no memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    parts = [z.compress(row * 1000) for _ in range(height // 1000)] + [z.compress(row * (height % 1000)), z.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def offline_scores(scorer, paths):
    """What ``defectkit predict`` computes for these files (same scorer, file path in)."""
    batch, ok, errors = scorer.load_batch(paths)
    assert not errors
    return scorer.score(batch)[0]


# ------------------------------------------------------------------------------ answers
def test_health_ready_and_model(client, scorer):
    assert client.get("/health").json() == {"status": "alive"}
    assert client.get("/ready").json() == {"ready": True}
    info = client.get("/model").json()
    assert info["method"] == "patchcore" and info["backbone"] == "efficientnet_lite0" and info["image_size"] == 64
    assert info["thresholds"]["image"] == pytest.approx(scorer.thresholds.image)
    assert info["thresholds"]["rule"] == "fpr" and "held-out" in info["thresholds"]["source"]
    assert info["defectkit_version"] and info["limits"]["max_batch"] == 8


def test_predict_answers_what_predict_computes(client, scorer, images):
    expected = offline_scores(scorer, images)
    thr = scorer.thresholds
    for path, score in zip(images, expected):
        r = client.post("/predict", files={"file": (path.name, path.read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["score"] == pytest.approx(float(score), rel=1e-5)
        assert body["label"] == ("defect" if score >= thr.image else "good")
        assert body["threshold"] == pytest.approx(thr.image)
        assert 0.0 <= body["normalized_score"] <= 1.0
        assert (body["width"], body["height"], body["map_size"]) == (64, 64, 64)
        assert "mask" not in body and "heatmap" not in body
        if body["label"] == "good":
            assert body["boxes"] == []


def test_mask_and_heatmap_are_pngs(client, scorer, images):
    defective = [p for p in images if p.parent.name != "good"][0]
    r = client.post("/predict?mask=true&heatmap=1", files={"file": ("x.png", defective.read_bytes(), "image/png")})
    body = r.json()
    import base64

    heat = Image.open(io.BytesIO(base64.b64decode(body["heatmap"])))
    assert heat.size == (64, 64) and heat.mode == "RGB"
    if body["label"] == "defect" and scorer.thresholds.pixel is not None:
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask"]))))
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        assert (mask > 0).sum() == sum(b["area"] for b in body["boxes"])
    else:
        assert body["mask"] is None


def test_batch_answers_in_order_and_states_its_maximum(client, scorer, images):
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in images]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 200
    assert [b["file"] for b in r.json()] == [p.name for p in images]
    assert [b["score"] for b in r.json()] == pytest.approx([float(s) for s in offline_scores(scorer, images)], rel=1e-5)
    too_many = [("files", (f"{i}.png", images[0].read_bytes(), "image/png")) for i in range(17)]
    r = client.post("/predict/batch", files=too_many)
    assert r.status_code == 413 and "at most 16" in r.json()["error"]


# ------------------------------------------------------------------------------ bad uploads
def test_every_malformed_upload_gets_its_status_and_the_service_keeps_answering(client, images):
    good = images[0].read_bytes()
    cases = {
        "text file named .png": (415, {"files": {"file": ("notes.png", b"just some text\n" * 10, "image/png")}}),
        "truncated PNG": (422, {"files": {"file": ("cut.png", good[: len(good) // 2], "image/png")}}),
        "PNG cut inside its header": (422, {"files": {"file": ("cut.png", good[:20], "image/png")}}),
        "0 bytes": (422, {"files": {"file": ("empty.png", b"", "image/png")}}),
        "50 MB": (413, {"files": {"file": ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(50 * 1024 * 1024), "image/png")}}),
        "30000 x 30000 PNG bomb": (413, {"files": {"file": ("bomb.png", png_bomb(), "image/png")}}),
        "wrong field": (422, {"files": {"image": ("a.png", good, "image/png")}}),
        "text field instead of a file": (
            422,
            {"data": {"file": "a.png"}, "files": {"note": ("n.txt", b"x", "text/plain")}},
        ),
        "form instead of multipart": (415, {"data": {"file": "a.png"}}),
        "wrong content type (raw body)": (415, {"content": good, "headers": {"content-type": "image/png"}}),
        "bad query parameter": (422, {"files": {"file": ("a.png", good, "image/png")}, "params": {"mask": "maybe"}}),
        "unknown query parameter": (422, {"files": {"file": ("a.png", good, "image/png")}, "params": {"boxes": "1"}}),
    }
    for name, (status, request) in cases.items():
        r = client.post("/predict", **request)
        assert r.status_code == status, f"{name}: {r.status_code} {r.text[:200]}"
        assert set(r.json()) == {"error"} and r.json()["error"], name
        after = client.post("/predict", files={"file": ("a.png", good, "image/png")})
        assert after.status_code == 200 and after.json()["label"] in ("good", "defect"), f"after {name}"


def test_the_bomb_is_refused_from_its_header(client):
    bomb = png_bomb()
    assert len(bomb) < 1_000_000 and struct.unpack(">II", bomb[16:24]) == (30000, 30000)
    assert len(zlib.decompress(bomb[41:-16])) == 30000 * 3751  # the pixel data is all there
    start = time.perf_counter()
    r = client.post("/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 413 and "decompression bomb" in r.json()["error"]
    assert time.perf_counter() - start < 5.0


def test_content_decides_not_the_name_or_declared_type(client, images):
    r = client.post("/predict", files={"file": ("photo.txt", images[0].read_bytes(), "text/plain")})
    assert r.status_code == 200
    jpeg = io.BytesIO()
    Image.open(images[0]).convert("RGB").save(jpeg, format="JPEG")
    assert client.post("/predict", files={"file": ("x.png", jpeg.getvalue(), "image/png")}).status_code == 200


def test_an_image_below_the_smallest_input_side_is_422(client):
    r = client.post("/predict", files={"file": ("tiny.png", png_bytes(np.zeros((8, 8, 3), np.uint8)), "image/png")})
    assert r.status_code == 422 and "8x8" in r.json()["error"]


def test_unknown_route_and_method_are_json_errors(client):
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    r = client.get("/predict")
    assert r.status_code == 405 and "error" in r.json()


# ------------------------------------------------------------------------------ KServe v2
def test_v2_endpoints_answer_requests_built_from_the_protocol(client, scorer, images):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/parts/ready").json() == {"name": "parts", "ready": True}
    meta = client.get("/v2/models/parts").json()
    assert meta["name"] == "parts" and meta["inputs"][0]["shape"] == [-1, -1, -1, 3]
    assert {o["name"] for o in meta["outputs"]} >= {"score", "label", "anomaly_map"}
    assert client.get("/v2/models/other").status_code == 404

    arrays = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images[:2]])
    expected = offline_scores(scorer, images[:2])
    uint8 = {
        "id": "req-1",
        "inputs": [{"name": "image", "shape": [2, 64, 64, 3], "datatype": "UINT8", "data": arrays.ravel().tolist()}],
    }
    r = client.post("/v2/models/parts/infer", json=uint8)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "parts" and body["id"] == "req-1"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["score"]["datatype"] == "FP32" and out["score"]["shape"] == [2]
    assert out["score"]["data"] == pytest.approx([float(s) for s in expected], rel=1e-5)
    assert out["label"]["datatype"] == "BYTES" and set(out["label"]["data"]) <= {"good", "defect"}
    assert all(isinstance(json.loads(b), list) for b in out["boxes"]["data"])

    fp32 = {
        "inputs": [
            {"name": "image", "shape": [1, 64, 64, 3], "datatype": "FP32", "data": (arrays[:1] / 255.0).tolist()}
        ],  # nested lists are allowed too
        "outputs": [{"name": "score"}, {"name": "anomaly_map"}],
    }
    out = {o["name"]: o for o in client.post("/v2/models/parts/infer", json=fp32).json()["outputs"]}
    assert set(out) == {"score", "anomaly_map"} and out["anomaly_map"]["shape"] == [1, 64, 64]
    assert out["score"]["data"][0] == pytest.approx(float(expected[0]), rel=1e-5)
    assert len(out["anomaly_map"]["data"]) == 64 * 64


@pytest.mark.parametrize(
    "tensor, status",
    [
        ({"name": "image", "shape": [1, 40, 40, 3], "datatype": "INT64", "data": [0] * 4800}, 422),
        ({"name": "image", "shape": [1, 40, 40, 3], "datatype": "UINT8", "data": [0] * 10}, 422),
        ({"name": "image", "shape": [1, 40, 40, 4], "datatype": "UINT8", "data": [0] * 6400}, 422),
        ({"name": "image", "shape": [1, 40, 40, 3], "datatype": "UINT8", "data": [300] * 4800}, 422),
        ({"name": "image", "shape": [1, 40, 40, 3], "datatype": "FP32", "data": [2.0] * 4800}, 422),
        ({"name": "image", "shape": [1, 30000, 30000, 3], "datatype": "UINT8", "data": []}, 413),
        ({"name": "image", "shape": [1, 40, 40, 3], "datatype": "UINT8"}, 422),
    ],
)
def test_v2_bad_tensors(client, tensor, status):
    r = client.post("/v2/models/parts/infer", json={"inputs": [tensor]})
    assert r.status_code == status and set(r.json()) == {"error"}
    assert (
        client.post(
            "/v2/models/parts/infer", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )


# ------------------------------------------------------------------------------ security
def test_api_key_guards_everything_but_health(scorer, images):
    with TestClient(create_app(scorer, ServeSettings(model_name="parts", api_key="s3cret"))) as c:
        assert c.get("/health").status_code == 200
        for path in ("/ready", "/model", "/metrics", "/v2/health/live", "/v2/models/parts"):
            r = c.get(path)
            assert r.status_code == 401 and "API key" in r.json()["error"], path
        file = {"file": ("a.png", images[0].read_bytes(), "image/png")}
        assert c.post("/predict", files=file).status_code == 401
        assert c.post("/predict", files=file, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/predict", files=file, headers={"Authorization": "Bearer s3cret"}).status_code == 200


# ------------------------------------------------------------------------------ observability
def test_metrics_and_one_json_log_line_per_request(client, images, caplog):
    good = images[0].read_bytes()
    with caplog.at_level(logging.INFO, logger="defectkit.serve.access"):
        for _ in range(3):
            client.post("/predict", files={"file": ("a.png", good, "image/png")})
        client.post("/predict", files={"file": ("a.png", b"", "image/png")})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "defectkit.serve.access"]
    assert [line["status"] for line in lines] == [200, 200, 200, 422]
    assert all(line["path"] == "/predict" and line["duration_ms"] >= 0 for line in lines)
    assert lines[0]["images"] == 1 and lines[0]["labels"][0] in ("good", "defect")
    text = client.get("/metrics").text
    assert 'defectkit_requests_total{endpoint="/predict",status="200"} 3.0' in text
    assert 'defectkit_requests_total{endpoint="/predict",status="422"} 1.0' in text
    assert 'defectkit_request_duration_seconds_count{endpoint="/predict"} 4.0' in text
    assert "defectkit_batch_size_count 3.0" in text
    n_images = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("defectkit_images_total"))
    assert n_images == 3
    assert "defectkit_defect_rate" in text and "defectkit_queue_depth 0.0" in text


# ------------------------------------------------------------------------------ batching and the queue
def test_batcher_gathers_concurrent_items_into_one_batch():
    sizes = []

    def run(items):
        sizes.append(len(items))
        return [x * 2 for x in items]

    async def main():
        b = DynamicBatcher(run, max_batch=8, max_wait_s=0.5, queue_size=32)
        await b.start()
        results = await asyncio.gather(*(b.submit([i]) for i in range(8)))
        more = await b.submit(list(range(10)))
        await b.stop()
        return results, more

    results, more = asyncio.run(main())
    assert results == [[i * 2] for i in range(8)] and sizes[0] == 8
    assert more == [i * 2 for i in range(10)] and sizes[1:] == [8, 2]


def test_batcher_refuses_what_does_not_fit_and_one_failure_fails_only_its_batch():
    gate = threading.Event()

    def run(items):
        gate.wait(5)
        if "bad" in items:
            raise ValueError("bad batch")
        return items

    async def main():
        b = DynamicBatcher(run, max_batch=1, max_wait_s=0.0, queue_size=2)
        await b.start()
        first = asyncio.ensure_future(b.submit(["a"]))
        await asyncio.sleep(0.05)  # "a" is being scored
        queued = asyncio.ensure_future(b.submit(["bad", "c"]))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await b.submit(["d"])
        gate.set()
        a = await first
        with pytest.raises(ValueError):
            await queued
        after = await b.submit(["e"])
        await b.stop()
        return a, after

    assert asyncio.run(main()) == (["a"], ["e"])


class GatedScorer:
    """A scorer whose forward pass waits for a gate, to fill the queue on purpose."""

    def __init__(self, scorer):
        self.inner, self.gate, self.entered = scorer, threading.Event(), threading.Event()
        self.method, self.output_size, self.thresholds = scorer.method, scorer.output_size, scorer.thresholds

    def load_arrays(self, images):
        return self.inner.load_arrays(images)

    def score(self, batch):
        self.entered.set()
        self.gate.wait(30)
        return self.inner.score(batch)

    def display_images(self, batch):
        return self.inner.display_images(batch)


def test_a_full_queue_is_503_with_retry_after(scorer, images):
    gated = GatedScorer(scorer)
    app = create_app(gated, ServeSettings(model_name="parts", max_batch=1, max_wait_ms=0, queue_size=2, max_files=1))
    good = images[0].read_bytes()
    with TestClient(app) as c:
        answers = []

        def send():
            answers.append(c.post("/predict", files={"file": ("a.png", good, "image/png")}).status_code)

        first = threading.Thread(target=send)
        first.start()
        assert gated.entered.wait(10)  # the first image is in the forward pass
        waiting = [threading.Thread(target=send) for _ in range(2)]
        for t in waiting:
            t.start()
        deadline = time.monotonic() + 10
        while app.state.service.batcher.depth() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.post("/predict", files={"file": ("a.png", good, "image/png")})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
        gated.gate.set()
        for t in [first, *waiting]:
            t.join(30)
        assert answers == [200, 200, 200]
        assert c.post("/predict", files={"file": ("a.png", good, "image/png")}).status_code == 200


# ------------------------------------------------------------------------------ the real server
@pytest.mark.slow
def test_sigterm_answers_the_requests_in_flight(model_file, images):
    import httpx
    from serve_server import running_server

    good = images[0].read_bytes()
    # Batches wait up to 2 s for company, so the requests are surely in flight when SIGTERM arrives.
    with running_server(model_file, "--max-wait-ms", "2000", "--max-batch", "8") as (proc, url):
        answers = []

        def send():
            r = httpx.post(f"{url}/predict", files={"file": ("a.png", good, "image/png")}, timeout=30)
            answers.append((r.status_code, r.json().get("label")))

        threads = [threading.Thread(target=send) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.7)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        # uvicorn re-raises the signal once it has shut down gracefully, so the exit status is SIGTERM's
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        stderr = proc.log_path.read_text()
    assert [a[0] for a in answers] == [200, 200, 200] and all(a[1] in ("good", "defect") for a in answers)
    log = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [e["status"] for e in log if e["path"] == "/predict"] == [200, 200, 200]


def test_the_service_code_imports_and_decodes_without_torch():
    """The serve extra needs no torch: only a torch model file (``.pt``) brings it in."""
    import subprocess
    import sys

    code = (
        "import sys, io, numpy as np; from PIL import Image\n"
        "import defectkit.serve.app, defectkit.serve.server, defectkit.serve.v2\n"
        "from defectkit.serve.uploads import decode_image\n"
        "b = io.BytesIO(); Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(b, 'PNG')\n"
        "assert decode_image(b.getvalue(), 10**6).shape == (40, 40, 3)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert r.returncode == 0, r.stderr


def test_cli_refuses_a_missing_model_and_impossible_limits(tmp_path, model_file, capsys):
    from defectkit.cli import main

    assert main(["serve", "--model", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt is not a file" in capsys.readouterr().err
    assert main(["serve", "--model", str(model_file), "--queue-size", "4"]) == 2
    assert "queue_size (4) must hold at least one full request of 16 images" in capsys.readouterr().err
