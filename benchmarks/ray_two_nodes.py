"""Two Ray nodes on one machine: a benchmark grid across both, a kill and --resume, and batch
prediction over 5,000 images with one node and with two, checked against local predict.

Each node is started with ``ray start --block`` as a child process of this script, so
stopping it stops exactly the nodes this script started (never ``ray stop``, which would
end every Ray of the machine). Phases, so timing can run under a lock of its own:

    python benchmarks/ray_two_nodes.py grid    --work DIR --results OUT   # grid on 2 nodes, kill + resume
    python benchmarks/ray_two_nodes.py predict --work DIR --results OUT   # local vs 1 node vs 2 nodes

``grid`` writes OUT/grid/ (the two-node benchmark) and OUT/kill_resume.json; ``predict``
writes OUT/predict.json. Numbers are whatever this machine gives; nothing is chosen on them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ["patchcore", "simplenet[epochs=2,feature_batch_size=256]"]
SMALL = ["--image-size", "64", "--device", "cpu", "--cpus-per-run", "1"]
N_IMAGES = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e["RAY_AUTH_MODE"] = "token"  # nodes and drivers share the token of ~/.ray/auth_token
    return e


@contextmanager
def cluster(n_nodes: int, work: Path):
    """``ray start --head`` (+ ``ray start --address`` for a second node), 1 CPU each; yields the address."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    procs = []
    logs = work / "ray-logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands = [
        [
            ray_bin,
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
        ]
    ]
    commands += [[ray_bin, "start", "--address", address, "--num-cpus", "1", "--block"]] * (n_nodes - 1)
    try:
        for i, cmd in enumerate(commands):
            log = open(logs / f"node{i}-{port}.log", "w")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True))
            wait_for_nodes(address, i + 1)
        print(f"ray cluster at {address}: {n_nodes} node(s) of 1 CPU", flush=True)
        yield address
    finally:
        for p in reversed(procs):  # --block: SIGTERM drains the node and stops its processes
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # whatever of that node is left (its own process group)
            except ProcessLookupError:
                pass
            p.wait()
        marker = Path("/tmp/ray/ray_current_cluster")  # `ray stop` would remove it; a stale one misleads ray.init()
        if marker.is_file() and marker.read_text().strip().endswith(f":{port}"):
            marker.unlink()


def wait_for_nodes(address: str, n: int, timeout: float = 180) -> None:
    code = (
        "import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print(sum(1 for x in ray.nodes() if x['Alive'])); ray.shutdown()"
    )
    end = time.time() + timeout
    while time.time() < end:
        r = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, env=env())
        if r.returncode == 0 and r.stdout.strip().splitlines() and int(r.stdout.strip().splitlines()[-1]) >= n:
            return
        time.sleep(3)
    raise RuntimeError(f"Ray at {address} did not reach {n} nodes in {timeout} s")


def defectkit(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "defectkit.cli", *map(str, argv)]
    print("$ defectkit " + " ".join(map(str, argv)), flush=True)
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {r.stderr[-3000:]}")
    return r


def rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def demo_category(work: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from defectkit.data import make_demo_dataset

    return make_demo_dataset(work / "data", seed=1, n_train=8, n_test_good=4, n_test_defect=6, size=64)


def phase_grid(work: Path, results: Path) -> None:
    data = demo_category(work)
    out = work / "grid"
    shutil.rmtree(out, ignore_errors=True)
    with cluster(2, work) as address:
        t0 = time.time()
        defectkit(
            "benchmark",
            "--methods",
            *METHODS,
            "--data",
            data,
            "--seeds",
            "0",
            "1",
            *SMALL,
            "--engine",
            "ray",
            "--ray-address",
            address,
            "--out",
            out,
            "--cache-dir",
            work / "cache",
        )
        grid_seconds = time.time() - t0
        grid = rows(out / "results.csv")
        nodes = sorted({r["node"] for r in grid})
        print(f"grid: {len(grid)} runs on {len(nodes)} nodes in {grid_seconds:.0f} s", flush=True)

        # kill test: 2 methods x 3 seeds; kill the driver once two rows are in results.csv, then --resume
        kill_out = work / "kill"
        shutil.rmtree(kill_out, ignore_errors=True)
        argv = [
            "benchmark",
            "--methods",
            *METHODS,
            "--data",
            data,
            "--seeds",
            "0",
            "1",
            "2",
            *SMALL,
            "--engine",
            "ray",
            "--ray-address",
            address,
            "--out",
            kill_out,
            "--cache-dir",
            work / "cache",
        ]
        driver = subprocess.Popen(
            [sys.executable, "-m", "defectkit.cli", *map(str, argv)],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        csv_path = kill_out / "results.csv"
        while driver.poll() is None:
            if csv_path.exists() and len(csv_path.read_text().splitlines()) >= 3:  # header + 2 runs
                os.killpg(driver.pid, signal.SIGKILL)
                break
            time.sleep(0.5)
        driver.wait()
        before = csv_path.read_text().splitlines()
        kept = before[1:]
        resumed = defectkit(*argv, "--resume")
        said = next((line for line in resumed.stderr.splitlines() if line.startswith("resume: ")), "")
        after = rows(csv_path)
        after_lines = csv_path.read_text().splitlines()
        new = [line for line in after_lines[1:] if line not in kept]
        kill = {
            "grid_runs": 6,
            "rows_when_killed": len(kept),
            "rows_after_resume": len(after),
            "resume_said": said,
            "new_rows_written_by_resume": len(new),
            "killed_rows_kept_unchanged": all(line in after_lines for line in kept),
            "missing_rows_only": len(new) == 6 - len(kept)
            and len(after) == 6
            and f"running the other {6 - len(kept)}" in said,
            "all_keys_once": len({(r["variant"], r["seed"]) for r in after}) == 6,
            "driver_exit_code_when_killed": driver.returncode,
            "nodes": sorted({r["node"] for r in after}),
        }
    print(json.dumps(kill, indent=1), flush=True)
    (results / "grid").mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "results.json", "summary.md"):
        shutil.copy(out / name, results / "grid" / name)
    (results / "kill_resume.json").write_text(json.dumps(kill, indent=1) + "\n")
    (results / "grid_nodes.json").write_text(
        json.dumps(
            {
                "runs": len(grid),
                "nodes": nodes,
                "runs_per_node": {n: sum(r["node"] == n for r in grid) for n in nodes},
                "seconds": round(grid_seconds, 1),
                "all_ok": all(r["error"] == "" for r in grid),
            },
            indent=1,
        )
        + "\n"
    )


def records(folder: Path):
    out = {}
    for p in sorted(folder.glob("predictions*.jsonl")):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            out[r["file"]] = r
    return out


def phase_predict(work: Path, results: Path) -> None:
    data = demo_category(work)
    model = work / "model.pt"
    if not model.exists():
        defectkit(
            "train",
            "--method",
            "patchcore",
            "--data",
            data,
            "--out",
            model,
            "--image-size",
            "64",
            "--device",
            "cpu",
            "--no-cache",
        )
    images = work / "images"
    if not images.is_dir() or len(os.listdir(images)) != N_IMAGES + 1:
        shutil.rmtree(images, ignore_errors=True)
        images.mkdir()
        sources = sorted((data / "test").rglob("*.png"))
        for i in range(N_IMAGES):
            (images / f"img_{i:05d}.png").symlink_to(sources[i % len(sources)])
        (images / "zz_unreadable.png").write_bytes(b"not an image")
    common = ["--model", model, "--input", images, "--no-overlays", "--device", "cpu", "--force"]
    runs = {}
    # local predict with one torch thread, as each Ray actor uses
    code = (
        "import sys, time, torch; torch.set_num_threads(1); from defectkit.cli import main; "
        "t = time.perf_counter(); c = main(sys.argv[1:]); print(f'LOCAL_SECONDS {time.perf_counter() - t:.3f}'); "
        "sys.exit(c)"
    )
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, "-c", code, "predict", *map(str, common), "--out", str(work / "pred-local")],
        env=env(),
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    local_seconds = float(r.stdout.split("LOCAL_SECONDS")[-1])
    runs["local_1_thread"] = {
        "seconds": round(local_seconds, 2),
        "images_per_second": round(N_IMAGES / local_seconds, 1),
        "wall_with_start_up": round(time.time() - t0, 1),
    }
    local = records(work / "pred-local")
    for n_nodes in (1, 2):
        with cluster(n_nodes, work) as address:
            out = work / f"pred-ray-{n_nodes}"
            t0 = time.time()
            r = defectkit(
                "predict", *common, "--out", out, "--engine", "ray", "--ray-address", address, "--workers", n_nodes
            )
            wall = time.time() - t0
        line = next(text for text in r.stdout.splitlines() if text.startswith("throughput:"))
        got = records(out)
        same = got == local
        diffs = [k for k in local if got.get(k) != local[k]]
        runs[f"ray_{n_nodes}_node"] = {
            "throughput_line": line,
            "images_per_second": float(line.split()[1]),
            "wall_with_start_up": round(wall, 1),
            "records": len(got),
            "identical_to_local": same,
            "differing_records": len(diffs),
            "unreadable_reported": "zz_unreadable.png" in r.stderr,
            "partitions": len(list(out.glob("predictions-*.jsonl"))),
        }
        print(json.dumps(runs[f"ray_{n_nodes}_node"]), flush=True)
    runs["n_images"] = N_IMAGES
    runs["load_average_after"] = os.getloadavg()
    results.mkdir(parents=True, exist_ok=True)
    (results / "predict.json").write_text(json.dumps(runs, indent=1) + "\n")
    print(json.dumps(runs, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("grid", "predict"))
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (data, images, outputs)")
    ap.add_argument("--results", type=Path, required=True, help="folder for the committed results")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; load {os.getloadavg()}", flush=True)
    (phase_grid if a.phase == "grid" else phase_predict)(a.work, a.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
