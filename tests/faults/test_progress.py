"""Progress output: bars redraw only on a terminal; a log (stderr not a TTY) gets plain lines
and no carriage returns; an error is never printed onto a bar's line."""

from __future__ import annotations

import io

import pytest

from defectkit.features import extractor

from .conftest import SMALL


def screen(raw: str) -> list:
    """What a terminal shows for ``raw``: a carriage return moves to column 0, text overwrites."""
    lines, current, col = [], [], 0
    for ch in raw:
        if ch == "\n":
            lines.append("".join(current).rstrip())
            current, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(current):
                current[col] = ch
            else:
                current.append(ch)
            col += 1
    if current:
        lines.append("".join(current).rstrip())
    return lines


def test_a_log_gets_no_carriage_returns(cli, category, tmp_path, monkeypatch):
    monkeypatch.delenv("DEFECTKIT_PROGRESS", raising=False)
    result = cli("train", "--data", category, "--out", tmp_path / "m.pt", *SMALL)  # stderr is captured: no TTY
    assert result.code == 0 and "\r" not in result.err and "\r" not in result.out


def test_mode_follows_the_terminal(monkeypatch):
    from defectkit.utils.progress import progress_mode

    monkeypatch.delenv("DEFECTKIT_PROGRESS", raising=False)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress_mode(io.StringIO()) in ("lines", "bar")  # "bar" only inside a Jupyter kernel
    assert progress_mode(Terminal()) == "bar"
    monkeypatch.setenv("DEFECTKIT_PROGRESS", "off")
    assert progress_mode(Terminal()) == "off"
    monkeypatch.setenv("DEFECTKIT_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="DEFECTKIT_PROGRESS"):
        progress_mode()


def test_line_progress_prints_whole_lines(monkeypatch):
    from defectkit.utils import progress
    from defectkit.utils.progress import LineProgress

    stream = io.StringIO()
    clock = iter(range(0, 1000, 20))
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    bar = LineProgress(range(5), desc="features", unit="img", interval=30.0, file=stream)
    assert list(bar) == [0, 1, 2, 3, 4]
    bar.set_postfix(loss="0.1")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines and "\r" not in stream.getvalue()
    assert lines[0].startswith("features: ") and lines[-1].startswith("features: 5/5 img in ")


@pytest.mark.parametrize("mode", ["bar", "lines"])
def test_an_error_during_a_bar_starts_its_own_line(cli, category, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("DEFECTKIT_PROGRESS", mode)
    real = extractor.load_images
    calls = []

    def fail_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("the second batch failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(extractor, "load_images", fail_second_batch)
    result = cli("train", "--data", category, "--out", tmp_path / "m.pt", "--batch-size", "2", *SMALL)
    assert result.code == 2 and len(calls) == 2
    shown = [line for line in screen(result.err) if "the second batch failed" in line]
    assert shown == ["defectkit: error: the second batch failed"]
