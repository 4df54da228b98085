"""A real ``defectkit serve`` in a subprocess on 127.0.0.1, for the tests that need one (loopback only)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model: Path, *options: str, env: dict = None, startup_s: float = 90.0):
    """Start ``defectkit serve --model MODEL OPTIONS`` and yield (process, base URL) once /ready answers 200.

    The server's output (one JSON line per request) goes to a file, ``proc.log_path``: a pipe
    nobody reads would fill after a few hundred requests and block the server."""
    import httpx

    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    log = tempfile.NamedTemporaryFile("w+", prefix="defectkit-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "defectkit.cli",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--device",
            "cpu",
            *options,
        ],
        cwd=REPO,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log_path = Path(log.name)
    url = f"http://127.0.0.1:{port}"
    headers = (
        {"Authorization": f"Bearer {environment['DEFECTKIT_API_KEY']}"} if environment.get("DEFECTKIT_API_KEY") else {}
    )
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"defectkit serve exited with {proc.returncode}: {proc.log_path.read_text()}")
            try:
                if httpx.get(f"{url}/ready", headers=headers, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"defectkit serve did not become ready within {startup_s} s")
            time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        proc.log_path.unlink(missing_ok=True)
