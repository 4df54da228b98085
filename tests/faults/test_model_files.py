"""Model files: whatever path is given as --model (a folder, an empty, truncated or random
file, a crafted pickle, another tool's model), the error names it, says what it looks
like and what a defectkit model file is, and nothing in the file is ever run."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import safetensors.torch
import torch

MODEL_FILE = "a defectkit model file is the one file `defectkit train --out` writes"


class _RunsCode:
    """Unpickling this calls os.system: a file holding it must never be opened with pickle."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _make(kind: str, folder, model_file, sentinel):
    path = folder / f"{kind}.pt"
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = model_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(7).integers(1, 255, 4096, dtype=np.uint8).tobytes())
    elif kind == "pickle_runs_code":
        path.write_bytes(pickle.dumps(_RunsCode(sentinel)))
    elif kind == "torch_archive_runs_code":
        buffer = io.BytesIO()
        torch.save({"state": _RunsCode(sentinel)}, buffer)
        path.write_bytes(buffer.getvalue())
    elif kind == "plain_safetensors":
        path.write_bytes(safetensors.torch.save({"weight": torch.zeros(4, 4)}))
    elif kind == "onnx":
        path = folder / "model.onnx"
        path.write_bytes(bytes([0x08, 0x07, 0x12, 0x07]) + b"pytorch" + b"\x1a\x032.1" + bytes(200))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("weights.txt", "not a torch archive")
    elif kind == "text":
        path.write_text("threshold: 0.5\n")
    return path


#: kind -> words the one-line error must hold (besides the path).
EXPECTED = {
    "folder": ["is a folder, not a model file", MODEL_FILE],
    "empty": ["empty (0 bytes)", MODEL_FILE],
    "truncated": ["truncated or corrupt", MODEL_FILE],
    "random": ["is not a defectkit model file", MODEL_FILE],
    "pickle_runs_code": ["contains code; it was not loaded, for safety", "Retrain"],
    "torch_archive_runs_code": ["contains code; it was not loaded, for safety", "Retrain"],
    "plain_safetensors": ["safetensors file but not a defectkit model file", MODEL_FILE],
    "onnx": ["looks like an ONNX model", MODEL_FILE],
    "zip": ["looks like a zip archive", MODEL_FILE],
    "text": ["looks like a text file", MODEL_FILE],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_bad_model_file_is_named_and_explained(cli, category, model_file, tmp_path, kind):
    sentinel = tmp_path / "code_ran"
    path = _make(kind, tmp_path, model_file, sentinel)
    result = cli("test", "--model", path, "--data", category, "--out", tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.err
    (line,) = result.error_lines
    assert str(path) in line
    for words in EXPECTED[kind]:
        assert words in line, (kind, line)
    assert not sentinel.exists(), "opening the model file ran code from it"
    assert not (tmp_path / "run").exists()


def test_a_missing_model_is_named(cli, category, tmp_path):
    result = cli("test", "--model", tmp_path / "nope.pt", "--data", category)
    (line,) = result.error_lines
    assert "model file not found" in line and "nope.pt" in line and MODEL_FILE in line
