"""Outputs: nothing a user has is replaced without --force, and no command does its
expensive work before finding out that it cannot write its result. Errors name the path
the user gave (never a hidden temporary file) and leave no partial file behind."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from defectkit.engine import test_run
from defectkit.models.base import AnomalyModel
from defectkit.utils import atomic
from defectkit.utils.atomic import atomic_write_bytes

from .conftest import SMALL


@pytest.fixture
def fits(monkeypatch):
    """Records every model fit, so a test can tell whether training started."""
    calls = []
    real = AnomalyModel.fit

    def recording(self, *args, **kwargs):
        calls.append(self.method)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AnomalyModel, "fit", recording)
    return calls


@pytest.fixture
def evaluations(monkeypatch):
    calls = []
    real = test_run.evaluate_model

    def recording(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(test_run, "evaluate_model", recording)
    return calls


def _one_error_naming(result, path) -> str:
    assert result.code == 2, result.err
    (line,) = result.error_lines
    assert f"'{path}'" in line and ".tmp" not in line and "Traceback" not in result.err
    return line


def test_train_into_read_only_folder_fails_before_training(cli, category, read_only_dir, fits):
    out = read_only_dir / "model.pt"
    line = _one_error_naming(cli("train", "--data", category, "--out", out, *SMALL), out)
    assert "read-only" in line or "permission denied" in line
    assert fits == []


def test_train_onto_a_folder_with_force_fails_before_training(cli, category, tmp_path, fits):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    line = _one_error_naming(cli("train", "--data", category, "--out", folder, "--force", *SMALL), folder)
    assert "is a folder" in line
    assert fits == [] and [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_train_below_a_file_fails_before_training(cli, category, tmp_path, fits):
    (tmp_path / "notes").write_text("a file, not a folder")
    out = tmp_path / "notes" / "model.pt"
    line = _one_error_naming(cli("train", "--data", category, "--out", out, *SMALL), out)
    assert "not a folder" in line and fits == []


def test_test_into_read_only_folder_fails_before_evaluation(cli, category, model_file, read_only_dir, evaluations):
    out = read_only_dir / "run"
    result = cli("test", "--model", model_file, "--data", category, "--out", out)
    _one_error_naming(result, out)
    assert evaluations == [] and "I-AUROC" not in result.out


def test_benchmark_into_read_only_folder_fails_before_fitting(cli, category, read_only_dir, fits):
    out = read_only_dir / "bench"
    _one_error_naming(cli("benchmark", "--data", category, "--seeds", "0", "--out", out, *SMALL), out)
    assert fits == []


def test_demo_into_read_only_folder_fails_before_fitting(cli, read_only_dir, fits):
    out = read_only_dir / "demo"
    _one_error_naming(cli("demo", "--out", out, *SMALL), out)
    assert fits == []


def test_benchmark_never_replaces_results_without_force(cli, category, tmp_path, fits):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "summary.md").write_text("my notes\n")
    result = cli("benchmark", "--data", category, "--seeds", "0", "--out", out, *SMALL)
    assert result.code == 2 and "--force" in result.err and "summary.md" in result.err
    assert (out / "summary.md").read_text() == "my notes\n" and fits == []


def test_synth_never_replaces_a_file_without_force(cli, category, tmp_path):
    out = tmp_path / "grid.png"
    out.write_bytes(b"my picture")
    result = cli("synth", "--data", category, "--kind", "cutpaste", "-n", "2", "--size", "64", "--out", out)
    assert result.code == 2 and "--force" in result.err
    assert out.read_bytes() == b"my picture"
    assert (
        cli("synth", "--data", category, "--kind", "cutpaste", "-n", "2", "--size", "64", "--out", out, "--force").code
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _disk_full_on_write(monkeypatch):
    """Every atomic write fails as on a full disk, after its temporary file was created."""
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd, *args, **kwargs):
            self.f = real_fdopen(fd, *args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", FullDisk)


def test_disk_filling_up_while_saving_names_the_model_and_leaves_nothing(cli, category, tmp_path, monkeypatch):
    out = tmp_path / "models" / "model.pt"
    out.parent.mkdir()
    real_save = AnomalyModel.save

    def save_on_a_full_disk(self, *args, **kwargs):  # the disk was fine at the start, full at the end
        _disk_full_on_write(monkeypatch)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(AnomalyModel, "save", save_on_a_full_disk)
    line = _one_error_naming(cli("train", "--data", category, "--out", out, *SMALL), out)
    assert "no space left" in line
    assert list(out.parent.iterdir()) == []  # neither the model nor a temporary file


def test_atomic_write_errors_name_the_target(tmp_path, monkeypatch):
    from defectkit.utils.output import OutputError

    target = tmp_path / "results.csv"
    target.write_text("old\n")
    _disk_full_on_write(monkeypatch)
    with pytest.raises(OutputError) as info:
        atomic_write_bytes(target, b"new\n")
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_atomic_write_onto_a_folder_names_it(tmp_path):
    from defectkit.utils.output import OutputError

    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_bytes(tmp_path, b"x")


def test_output_checks_leave_nothing_behind(tmp_path):
    from defectkit.utils.output import OutputError, check_output_dir, check_output_file

    assert check_output_file(tmp_path / "new" / "model.pt") == tmp_path / "new" / "model.pt"
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # the probe is removed and nothing is created yet
    (tmp_path / "m.pt").write_bytes(b"model")
    with pytest.raises(FileExistsError, match="--force"):
        check_output_file(tmp_path / "m.pt")
    check_output_file(tmp_path / "m.pt", force=True)
    with pytest.raises(OutputError, match="not a folder"):
        check_output_dir(tmp_path / "m.pt")


def _mount_tmpfs(folder: Path, size: str) -> bool:
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A real, full file system: a 64 KiB tmpfs filled to the last byte (skipped where mounting is not allowed)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if not _mount_tmpfs(folder, "64k"):
        pytest.skip("mounting a tmpfs needs root; the full-disk case is also covered by a simulated write")
    try:
        with open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True, timeout=20)


def test_full_disk_fails_before_training(cli, category, full_disk, fits):
    out = full_disk / "model.pt"
    line = _one_error_naming(cli("train", "--data", category, "--out", out, *SMALL), out)
    assert "no space left" in line and fits == []
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]
