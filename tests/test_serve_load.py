"""The service under load: 2,000 /predict requests of MVTec AD bottle images from 16 concurrent
clients against a real server on 127.0.0.1 (a subprocess). Checks: no errors, and the server's
resident memory after the run within 10 % of what it was after the first 200 requests (both read
with no request in flight); p50/p99 latency and throughput are printed (and kept as the test's
user properties).

The model is small on purpose (PatchCore, 64 px, 10 training images) so the run stays well
under two minutes on a 2-core CPU; the throughput comparison with ``defectkit predict`` at the
default size is the benchmark (benchmarks/serve_load.py), not a test.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
psutil = pytest.importorskip("psutil")

from conftest import MVTEC_BOTTLE, requires_shared_data  # noqa: E402
from serve_server import running_server  # noqa: E402

REQUESTS, CLIENTS, WARM = 2000, 16, 200


@pytest.fixture(scope="module")
def bottle_model(tmp_path_factory):
    from defectkit.models.factory import build_model

    path = tmp_path_factory.mktemp("serve-load") / "bottle64.pt"
    train = sorted((MVTEC_BOTTLE / "train" / "good").glob("*.png"))[:10]
    build_model("patchcore", None, image_size=64, device="cpu", use_cache=False).fit(train, progress=False).save(path)
    return path


@requires_shared_data
@pytest.mark.realdata
@pytest.mark.slow
def test_2000_requests_from_16_clients(bottle_model, record_property):
    from defectkit.serve.load import LoadResult, run_load

    files = sorted((MVTEC_BOTTLE / "test").glob("*/*.png"))
    assert files, f"no test images under {MVTEC_BOTTLE / 'test'}"
    with running_server(bottle_model) as (proc, url):
        server = psutil.Process(proc.pid)
        # Memory is read when the clients are done (nothing in flight), after the first 200
        # requests and after all of them, so the two readings compare like with like.
        first = run_load(f"{url}/predict", files, WARM, CLIENTS)
        rss = {WARM: server.memory_info().rss}
        rest = run_load(
            f"{url}/predict", files[WARM % len(files) :] + files[: WARM % len(files)], REQUESTS - WARM, CLIENTS
        )
        rss[REQUESTS] = server.memory_info().rss
    result = LoadResult(
        REQUESTS,
        CLIENTS,
        first.seconds + rest.seconds,
        first.latencies_s + rest.latencies_s,
        first.errors + rest.errors,
        {k: first.statuses.get(k, 0) + rest.statuses.get(k, 0) for k in {**first.statuses, **rest.statuses}},
        {k: first.labels.get(k, 0) + rest.labels.get(k, 0) for k in {**first.labels, **rest.labels}},
    )
    summary = result.summary()
    summary.update(rss_after_200_mb=round(rss[WARM] / 2**20, 1), rss_after_run_mb=round(rss[REQUESTS] / 2**20, 1))
    for key, value in summary.items():
        record_property(key, value)
    print(f"\nserve load: {summary}")
    assert result.errors == [], result.errors[:5]
    assert summary["statuses"] == {"200": REQUESTS}
    assert set(result.labels) <= {"good", "defect"} and result.labels.get("defect", 0) > 0
    growth = rss[REQUESTS] / rss[WARM] - 1
    assert abs(growth) <= 0.10, f"server RSS went from {rss[WARM] / 2**20:.1f} MiB to {rss[REQUESTS] / 2**20:.1f} MiB"
