"""mkdocs hooks: pages generated at build time, so the site never drifts from the code.

* ``cli.md``: every command's ``--help``, rendered from ``defectkit.cli.build_parser()``;
  a changed option shows up in the next build without anyone copying text.
* ``contributing.md`` and ``changelog.md``: the repository's CONTRIBUTING.md and
  CHANGELOG.md, with their links into ``docs/`` rewritten to the site's paths.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
#: repository files shown as site pages: (source at the repo root, page in the site)
ROOT_PAGES = (("CONTRIBUTING.md", "contributing.md"), ("CHANGELOG.md", "changelog.md"))


def _subcommands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """(full command, parser) for every sub-command, depth first, in the order they were added."""
    for action in parser._actions:  # argparse exposes sub-parsers only through its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command = f"{prefix} {name}"
                yield command, sub
                yield from _subcommands(sub, command)


def cli_reference() -> str:
    """The CLI reference page: the top-level help, then each command's help, as code blocks."""
    os.environ.setdefault("COLUMNS", "100")  # argparse wraps help text to the terminal width
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # this checkout's parser, whatever defectkit is installed
    from defectkit.cli import build_parser

    parser = build_parser()
    parts: List[str] = [
        "# Command-line reference",
        "",
        "Generated from the argument parser (`defectkit.cli.build_parser`) when the site is built;",
        "`defectkit COMMAND --help` prints the same text.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for command, sub in _subcommands(parser, "defectkit"):
        parts += ["", f"## `{command}`", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def _site_links(markdown: str) -> str:
    """Links written from the repository root (``docs/protocol.md``) -> site paths (``protocol.md``)."""
    return re.sub(r"\]\(docs/", "](", markdown)


def on_files(files, config):
    """Add the generated pages to the build."""
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    for source, page in ROOT_PAGES:
        text = (ROOT / source).read_text(encoding="utf-8")
        files.append(File.generated(config, page, content=_site_links(text)))
    return files
