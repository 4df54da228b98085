"""Shared set-up of the faults suite: one tiny category, one trained model, a CLI runner,
bad files of every kind, and a read-only folder that is read-only even for root."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

from defectkit.cli import main
from defectkit.data import load_dataset, make_demo_dataset
from defectkit.models.factory import build_model

#: 64 px, no feature cache: every CLI call in this suite is small and leaves nothing behind.
SMALL = ["--image-size", "64", "--no-cache"]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keep the user's ~/.cache/defectkit out of every test."""
    monkeypatch.setenv("DEFECTKIT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def category(tmp_path_factory) -> Path:
    """A generated MVTec-style category: 6 normal training images, 3 good and 3 defective test images, 64 px."""
    root = tmp_path_factory.mktemp("faults-data")
    return make_demo_dataset(root, seed=0, n_train=6, n_test_good=3, n_test_defect=3, size=64)


@pytest.fixture(scope="session")
def model_file(category, tmp_path_factory) -> Path:
    """A PatchCore model trained on ``category`` (what `defectkit train` would write)."""
    path = tmp_path_factory.mktemp("faults-model") / "model.pt"
    model = build_model("patchcore", None, image_size=64, device="cpu", use_cache=False)
    model.fit(load_dataset(category), progress=False).save(path)
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> List[str]:
        return [line for line in self.err.splitlines() if line.startswith("defectkit: error:")]


@pytest.fixture
def cli(capsys):
    """``cli("train", "--data", ...)`` -> Result(exit code, stdout, stderr)."""

    def run(*argv) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def copy_category(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------ bad files
def png_with_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def readable_images(folder: Path, source: Path) -> Dict[str, Path]:
    """The same picture stored as RGB, grayscale, RGBA, 16-bit and palette PNGs: all readable."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.open(source).convert("RGB")
    files = {
        "rgb": folder / "rgb.png",
        "gray": folder / "gray.png",
        "rgba": folder / "rgba.png",
        "sixteen_bit": folder / "sixteen_bit.png",
        "palette": folder / "palette.png",
    }
    rgb.save(files["rgb"])
    rgb.convert("L").save(files["gray"])
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(files["rgba"])
    gray16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(files["sixteen_bit"])
    assert Image.open(files["sixteen_bit"]).mode.startswith("I")
    rgb.quantize(64).save(files["palette"])
    return files


#: Bad image files and a word the reason for refusing each must contain.
BAD_IMAGE_REASONS = {
    "truncated": "truncated",
    "empty": "empty",
    "text": "not a recognised image",
    "huge": "too large",
    "tiny": "4x4",
}


def bad_images(folder: Path, source: Path) -> Dict[str, Path]:
    """One file of each kind in BAD_IMAGE_REASONS."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = source.read_bytes()
    files = {k: folder / f"{k}.png" for k in BAD_IMAGE_REASONS}
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["empty"].write_bytes(b"")
    files["text"].write_text("inspection notes, not an image\n")
    png_with_header(files["huge"], 100_000, 100_000)
    Image.open(source).convert("RGB").resize((4, 4)).save(files["tiny"])
    return files


# ------------------------------------------------------------------------- read-only output
def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(b"x")
        return True
    except OSError:
        return False


def _mount_read_only(folder: Path) -> bool:
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and not _writable(folder)


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """A folder nothing can be written into: mode 0555; for root (which ignores modes) a
    read-only tmpfs mounted on it, or where mounting is not allowed, a refusing probe."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    mounted = False
    if _writable(folder):
        mounted = _mount_read_only(folder)
        if not mounted:
            from defectkit.utils import output

            real = output.probe_writable

            def refuse(path):
                if Path(os.path.abspath(path)) == Path(os.path.abspath(folder)):
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real(path)

            monkeypatch.setattr(output, "probe_writable", refuse)
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=20)
    folder.chmod(0o755)
