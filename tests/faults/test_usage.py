"""Usage: each command takes exactly the options its --help and the README list; an option
it does not take is refused under that command's usage line, with the reason when the
model file is what fixes it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from defectkit.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
#: What the model file fixes, so `test` and `predict` do not take it.
MODEL_FIXED_OPTIONS = ("--backbone", "--weights", "--image-size", "--crop-size", "--seed", "--param")


def command_options() -> dict:
    """{command: set of its option strings}, read from the parser itself."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {
        name: {o for a in sub._actions for o in a.option_strings if o not in ("-h", "--help")}
        for name, sub in commands.items()
    }


def readme_options() -> dict:
    """{command: options} from the README's table of options ("| `train` | `--data`, ... |")."""
    found = {}
    for line in README.read_text().splitlines():
        m = re.match(r"^\|\s*`(\w+)`\s*\|(.*)\|\s*$", line)
        if m and m.group(1) in command_options():
            found[m.group(1)] = set(re.findall(r"`(-{1,2}[\w-]+)`", m.group(2)))
    return found


def test_readme_lists_exactly_each_commands_options():
    assert readme_options() == command_options()


@pytest.mark.parametrize("command", ["train", "test", "predict", "serve", "benchmark", "demo", "synth"])
def test_help_lists_exactly_the_options(cli, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # no line wrapping inside an option name
    result = cli(command, "--help")
    assert result.code == 0
    listed = set(re.findall(r"(?<![\w-])(-{1,2}[a-z][\w-]*)", result.out)) - {"-h", "--help"}
    assert listed == command_options()[command]


@pytest.mark.parametrize("command", ["test", "predict"])
def test_model_fixed_options_are_refused_under_the_commands_usage(cli, command, tmp_path):
    required = {
        "test": ["--model", "m.pt", "--data", "d"],
        "predict": ["--model", "m.pt", "--input", "x", "--out", "o"],
    }
    for option in MODEL_FIXED_OPTIONS:
        result = cli(command, *required[command], option, "1")
        assert result.code == 2
        assert result.err.startswith(f"usage: defectkit {command} ")
        assert f"defectkit {command}: error: unrecognized arguments: {option} 1" in result.err
        assert "come from the model file" in result.err
        assert "usage: defectkit [-h]" not in result.err
    assert "come from the model file" in " ".join(cli(command, "--help").out.split())


def test_other_unknown_options_are_refused_under_the_commands_usage(cli):
    result = cli("train", "--data", "d", "--out", "m.pt", "--no-such-option")
    assert result.code == 2 and result.err.startswith("usage: defectkit train ")
    assert "defectkit train: error: unrecognized arguments: --no-such-option" in result.err
