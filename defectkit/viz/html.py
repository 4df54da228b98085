"""Pieces shared by the self-contained HTML pages (test run, benchmark).

A page must open from a file with no server and no network: styles and scripts are
inline, plots are inline SVG, images are data URIs. Full-size files next to the page
are linked, never required.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from PIL import Image

esc = html.escape

CSS = """
:root{--good:#1f77b4;--bad:#d62728;--muted:#555;--line:#d8d8d8}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:1em 1.2em 3em;color:#1d1d1d;background:#fff;line-height:1.4}
h1{font-size:1.55em;margin:.3em 0 .1em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid var(--line);
padding-bottom:.2em}h3{font-size:1.02em;margin:1.2em 0 .3em}
nav{font-size:.9em;margin:.6em 0 1em}nav a{margin-right:1em}
.sub{color:var(--muted);margin:0}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
td,th{border:1px solid var(--line);padding:.28em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flagged td{background:#fdecec}tr.good.flagged td{background:#fde2c8}
.note{color:var(--muted);font-size:.88em;max-width:60em}
.warn{background:#fff6db;border-left:4px solid #e0a800;padding:.5em .8em;max-width:60em}
.info{background:#eef5fb;border-left:4px solid var(--good);padding:.5em .8em;max-width:60em}
.plots{display:flex;flex-wrap:wrap;gap:14px}
.plot{margin:0;position:relative;display:inline-block;border:1px solid #eee;background:#fff}
.plot svg{display:block;max-width:100%;height:auto}
.marker{position:absolute;width:0;border-left:2px solid #111;pointer-events:none}
.marker span{position:absolute;top:-1.25em;left:3px;font-size:11px;white-space:nowrap;background:#fffc;padding:0 2px}
.slider-row{display:flex;align-items:center;gap:.8em;flex-wrap:wrap;margin:.8em 0}
#threshold-slider{width:min(640px,90vw)}
output{font-variant-numeric:tabular-nums;font-weight:600;min-width:7em;display:inline-block}
.confusion td{min-width:9em}.confusion .big{font-size:1.35em;font-weight:650}
.confusion td.bad{background:#fdecec}.confusion td.ok{background:#edf7ed}
.rates{display:flex;gap:2.2em;margin:.6em 0;font-size:1.02em}.rates b{font-size:1.25em}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;max-width:420px}
.gallery img{width:100%;border:1px solid #ccc;display:block}
figcaption{font-size:.84em;color:#333;margin-top:.2em}
details summary{cursor:pointer;margin:.4em 0}
.params{display:flex;flex-wrap:wrap;gap:0 2em}.params table{min-width:22em}
"""


def fmt(value: Any, digits: int = 4) -> str:
    """A value for a table cell: floats to ``digits`` significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def pct(value: Optional[float], digits: int = 1) -> str:
    """A fraction as a percentage, "-" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * float(value):.{digits}f} %"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = (), attrs: str = "") -> str:
    """An HTML table; cells are escaped text (pass pre-formatted strings)."""
    num = list(numeric) + [False] * (len(header) - len(numeric))
    head = "".join(f'<th class="num">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>" for h, n in zip(header, num))
    body = []
    for row in rows:
        body.append(
            "<tr>"
            + "".join(
                f'<td class="num">{esc(str(c))}</td>' if n else f"<td>{esc(str(c))}</td>" for c, n in zip(row, num)
            )
            + "</tr>"
        )
    return f"<table{attrs}><tr>{head}</tr>{''.join(body)}</table>"


def json_script(element_id: str, data: Any) -> str:
    """Data for the page's script, as a JSON block that cannot close its own tag."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def image_data_uri(path: Union[str, Path], max_width: int = 760, quality: int = 85) -> str:
    """An image file as a JPEG data URI, at most ``max_width`` pixels wide (keeps pages small)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > max_width:
            im = im.resize((max_width, max(1, round(im.height * max_width / im.width))), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def relative_link(path: Union[str, Path], base: Union[str, Path]) -> str:
    """``path`` relative to the folder ``base`` (where the page is), as a URL path."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()


def page(title: str, body: str, script: str = "") -> str:
    """A whole HTML document with the shared style."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
        + (f"<script>{script}</script>\n" if script else "")
        + "</body></html>\n"
    )
