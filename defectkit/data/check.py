"""``defectkit data check``: what a data folder holds, and everything wrong with it, before training.

A wrong data set fails late and quietly: a mask of the wrong size is resized and shifts
the defect, a missing mask makes a defect count as normal pixels, an image that is in
both the training and the test split inflates every metric. The check opens the folder
as its layout (detected, or named) in non-strict mode, decodes every image and mask
completely, and reports:

* the layout and the counts per split and defect type (with masks);
* the image sizes and modes, and the mask sizes;
* images the layout leaves out (e.g. defective training images) and why;
* every problem: missing masks, masks whose size differs from their image's, masks of
  defective images without a defect pixel, unreadable files, and images whose content
  (SHA-1 of the file bytes) is in both a training (or validation) split and the test split,
  plus what the reader itself tolerated (files a split file names that do not exist ...).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..utils.progress import progress as progress_bar
from .batches import _map_ordered
from .images import ImageReadError, _open_decoded, read_mask
from .samples import Sample
from .tiles import content_hash

PathLike = Union[str, Path]
#: Problems printed by ``format_report`` (the JSON report has all).
SHOWN_PROBLEMS = 50


@dataclass
class CheckReport:
    """The result of ``check_dataset``; ``to_dict`` is its JSON form."""

    path: str
    layout: str
    layout_title: str
    layout_forced: bool
    category: str
    counts: List[Dict[str, Any]] = field(default_factory=list)
    image_sizes: Dict[str, int] = field(default_factory=dict)
    image_modes: Dict[str, int] = field(default_factory=dict)
    mask_sizes: Dict[str, int] = field(default_factory=dict)
    excluded: Dict[str, int] = field(default_factory=dict)
    defect_groups: Dict[str, List[str]] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _image_info(path: Path) -> Tuple[str, Tuple[int, int], str]:
    """(content hash, (width, height), mode) of a fully decoded image; ImageReadError if unreadable."""
    im = _open_decoded(path)
    return content_hash(path), im.size, im.mode


def _mask_info(path: Path) -> Tuple[Tuple[int, int], bool]:
    """((width, height), has a defect pixel) of a mask file or mask folder."""
    m = read_mask(path)
    return (int(m.shape[1]), int(m.shape[0])), bool(m.any())


def _size(wh: Tuple[int, int]) -> str:
    return f"{wh[0]}x{wh[1]}"


def _splits(ds: Any) -> List[Tuple[str, List[Sample]]]:
    return [(name, list(getattr(ds, name, []) or [])) for name in ("train", "validation", "test")]


def check_dataset(path: PathLike, layout: Optional[str] = None, progress: bool = True, workers: int = 2) -> CheckReport:
    """Open ``path`` (one category, layout detected or ``layout``) and check every file."""
    from .layouts import detect_layout, get_layout, open_dataset

    p = Path(path)
    ds = open_dataset(p, layout=layout, strict=False)
    chosen = get_layout(layout) if layout is not None else detect_layout(p)
    report = CheckReport(
        path=str(p),
        layout=chosen.name,
        layout_title=chosen.title,
        layout_forced=layout is not None,
        category=str(getattr(ds, "name", p.name)),
    )
    problems: List[str] = list(getattr(ds, "problems", []) or [])
    splits = _splits(ds)
    samples = [(split, s) for split, items in splits for s in items]

    bar = progress_bar(total=len(samples), desc="check", unit="img", enabled=progress)

    def image_job(item):
        out = _image_info(item[1].path)
        bar.update(1)
        return out

    infos = _map_ordered(image_job, samples, workers)
    bar.close()
    masked = [(split, s) for split, s in samples if s.mask_path is not None]
    mask_infos = _map_ordered(lambda item: _mask_info(item[1].mask_path), masked, workers)
    mask_of = {id(s): info for (_, s), info in zip(masked, mask_infos)}

    counts: Dict[Tuple[str, str], List[int]] = {}
    sizes: Counter = Counter()
    modes: Counter = Counter()
    mask_sizes: Counter = Counter()
    by_hash: Dict[str, Dict[str, List[Path]]] = defaultdict(lambda: defaultdict(list))
    named_missing = " ".join(problems)
    for (split, s), info in zip(samples, infos):
        row = counts.setdefault((split, s.defect_type), [0, 0])
        row[0] += 1
        if isinstance(info, ImageReadError):
            problems.append(f"unreadable image: {info}")
            continue
        digest, wh, mode = info
        sizes[_size(wh)] += 1
        modes[mode] += 1
        by_hash[digest][split].append(s.path)
        if s.mask_path is None:
            if s.label == 1 and str(s.path) not in named_missing:
                problems.append(f"missing mask: defective image '{s.path}' has no ground-truth mask")
            continue
        minfo = mask_of[id(s)]
        if isinstance(minfo, ImageReadError):
            problems.append(f"unreadable mask: {minfo}")
            continue
        row[1] += 1
        mwh, has_defect = minfo
        mask_sizes[_size(mwh)] += 1
        if mwh != wh:
            problems.append(
                f"mis-sized mask: '{s.mask_path}' is {_size(mwh)} px but its image '{s.path}' is "
                f"{_size(wh)} px (it would be resized nearest-neighbour, shifting the defect)"
            )
        if s.label == 1 and not has_defect:
            problems.append(f"empty mask: '{s.mask_path}' of defective image '{s.path}' has no defect pixel")
        if s.label == 0 and has_defect:
            problems.append(f"good image '{s.path}' has a mask with defect pixels: '{s.mask_path}'")
    for digest, where in by_hash.items():
        test = where.get("test", [])
        for split in ("train", "validation"):
            for a in where.get(split, []):
                for b in test:
                    problems.append(
                        f"duplicate between {split} and test: '{a}' and '{b}' have the same content "
                        f"(sha1 {digest[:12]})"
                    )

    order = {"train": 0, "validation": 1, "test": 2}
    report.counts = [
        {"split": split, "defect_type": kind, "images": n, "masks": m}
        for (split, kind), (n, m) in sorted(
            counts.items(), key=lambda kv: (order[kv[0][0]], kv[0][1] != "good", kv[0][1])
        )
    ]
    report.image_sizes = dict(sizes.most_common())
    report.image_modes = dict(modes.most_common())
    report.mask_sizes = dict(mask_sizes.most_common())
    report.excluded = {k: len(v) for k, v in (getattr(ds, "excluded", {}) or {}).items()}
    report.defect_groups = {k: list(v) for k, v in (getattr(ds, "defect_groups", {}) or {}).items()}
    report.problems = problems
    return report


def _tally(counter: Dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counter.items()) or "-"


def format_report(report: CheckReport, shown: int = SHOWN_PROBLEMS) -> str:
    """The report as the text ``defectkit data check`` prints."""
    lines = [
        f"data check: {report.path}",
        f"layout: {report.layout} ({report.layout_title}), {'as given (--layout)' if report.layout_forced else 'detected'}",
        f"category: {report.category}",
        "",
    ]
    header = ("split", "defect type", "images", "masks")
    width = max([len(header[1])] + [len(r["defect_type"]) for r in report.counts])
    lines.append(f"{header[0]:<10} {header[1]:<{width}} {header[2]:>7} {header[3]:>6}")
    for r in report.counts:
        masks = "-" if r["defect_type"] == "good" and not r["masks"] else str(r["masks"])
        lines.append(f"{r['split']:<10} {r['defect_type']:<{width}} {r['images']:>7} {masks:>6}")
    total = sum(r["images"] for r in report.counts)
    total_masks = sum(r["masks"] for r in report.counts)
    lines.append(f"{'total':<10} {'':<{width}} {total:>7} {total_masks:>6}")
    lines += [
        "",
        f"image sizes: {_tally(report.image_sizes)}",
        f"image modes: {_tally(report.image_modes)}",
        f"mask sizes: {_tally(report.mask_sizes)}",
    ]
    for group, kinds in report.defect_groups.items():
        lines.append(f"defect group {group}: {', '.join(kinds)} (metrics reported apart)")
    for what, n in report.excluded.items():
        lines.append(f"not used: {n} {what}")
    if not report.problems:
        lines.append("problems: none")
    else:
        lines.append(f"problems ({len(report.problems)}):")
        lines += [f"- {p}" for p in report.problems[:shown]]
        if len(report.problems) > shown:
            lines.append(f"- ... and {len(report.problems) - shown} more (--json lists all)")
    return "\n".join(lines)


def report_json(report: CheckReport) -> str:
    return json.dumps(report.to_dict(), indent=1)
