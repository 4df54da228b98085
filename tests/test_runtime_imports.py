"""The deployment path imports nothing from torch: a torch-free install can load and run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME_MODULES = [
    "defectkit.cli",
    "defectkit.deploy.loading",
    "defectkit.deploy.onnx_scorer",
    "defectkit.deploy.onnx_model",
    "defectkit.deploy.onnx_thresholds",
    "defectkit.deploy.thresholds",
    "defectkit.deploy.regions",
    "defectkit.engine.predict",
    "defectkit.engine.inputs",
    "defectkit.engine.speed",
    "defectkit.data.preprocess",
    "defectkit.data.images",
    "defectkit.utils.atomic",
    "defectkit.viz.overlay",
]


def test_runtime_modules_do_not_import_torch():
    script = (
        "import importlib, json, sys\n"
        f"for name in {RUNTIME_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "from defectkit.cli import build_parser\n"
        "build_parser()\n"
        "from defectkit.data import read_image, Preprocess, ImageReadError\n"
        "heavy = sorted(m for m in ('torch', 'safetensors', 'sklearn', 'matplotlib') if m in sys.modules)\n"
        "print(json.dumps(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_training_names_of_defectkit_data_still_resolve():
    from defectkit import data

    assert data.load_images.__module__ == "defectkit.data.batches"
    assert data.DEMO_DEFECT_TYPES
    assert "MVTecCategory" in dir(data)
