"""Model files as an older release wrote them, for the tests that check they still load."""

from __future__ import annotations

from pathlib import Path

from defectkit.utils.model_file import read_model_file, write_model_file


def save_without_params(model, path: Path, *names: str) -> Path:
    """Save ``model`` at ``path`` with the parameters ``names`` left out, as files saved before
    those parameters existed are; returns ``path``."""
    path = model.save(path)
    payload = read_model_file(path)
    for name in names:
        del payload["params"][name]
    write_model_file(path, payload)
    return path
