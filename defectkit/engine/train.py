"""Training inputs as a user gives them: a category or a folder of good images, plus seen defects.

Training needs only normal images, so a plain folder of good images is as valid as an
MVTec-style category, and a category's test side (its test images and masks) is not read. Supervised methods (PRN) may also learn from a few real defects:
drawn from a category's test set (and then left out of every later test of that model)
or taken from the user's own annotated folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..data import DatasetLayoutError, load_dataset, training_images
from ..data.seen_anomalies import draw_seen_anomalies, seen_file_names, seen_from_folder
from ..models.factory import check_seen_supported

PathLike = Union[str, Path]


def training_set(path: PathLike, layout: Optional[str] = None) -> Tuple[list, str]:
    """(normal training items, name) from a category folder (of any layout, or of ``layout``)
    or a plain folder of images.

    Without ``layout`` only the training side is read first (``data.training_images``): a
    category without ``test/``, or with a test-side problem such as a missing mask, trains;
    ``test`` reports those problems. Other layouts (VisA, BTAD, ...) are read through the
    layout registry.
    """
    if layout is None:
        try:
            return training_images(path)
        except DatasetLayoutError as first:
            try:
                ds = load_dataset(path)
            except DatasetLayoutError:
                raise first from None
            return ds.train, ds.name
    ds = load_dataset(path, layout=layout)
    return ds.train, ds.name


def seen_for_training(
    method: str,
    data: PathLike,
    seed: int,
    seen_anomalies: int = 0,
    seen_dir: Optional[PathLike] = None,
    layout: Optional[str] = None,
) -> Tuple[Optional[list], str]:
    """(seen anomalies or None, where they came from) for a supervised fit."""
    if seen_dir:
        check_seen_supported(method, "--seen-dir")
        return seen_from_folder(seen_dir), str(seen_dir)
    if not seen_anomalies:
        return None, ""
    check_seen_supported(method, "--seen-anomalies")
    try:
        dataset = load_dataset(data, layout=layout)
    except DatasetLayoutError as exc:
        raise DatasetLayoutError(f"--seen-anomalies draws from a category's test set, but {exc}") from None
    seen, _ = draw_seen_anomalies(dataset, seen_anomalies, seed)
    return seen, f"test set of {data}, seed {seed}"


def threshold_defects(
    rule: Optional[str], defects_dir: Optional[PathLike] = None, seen: Optional[List] = None
) -> Tuple[Optional[List], str]:
    """(defect Samples for F1-max thresholds or None, where they come from), checked before training.

    ``rule`` "f1" (implied by ``defects_dir``) needs annotated defects: ``defects_dir``
    (never trained on), else a supervised fit's seen anomalies, which the model also
    trains on, so F1 on them is optimistic (said in the thresholds' source).
    """
    if defects_dir:
        if rule == "fpr":
            raise ValueError(
                "--threshold-defects sets F1-max thresholds; it cannot be combined with --threshold-rule fpr"
            )
        return seen_from_folder(defects_dir), f"annotated defects in {defects_dir}"
    if rule != "f1":
        return None, ""
    if seen is None:
        raise ValueError(
            "--threshold-rule f1 needs defect images with masks: --threshold-defects DIR (or, for a "
            "supervised method, its seen anomalies)"
        )
    return list(seen), "seen anomalies (also trained on, so F1 on them is optimistic)"


def fit_model(
    model,
    items: list,
    seen: Optional[List] = None,
    source: str = "",
    progress: bool = True,
    defects: Optional[List] = None,
    defect_source: str = "annotated defects",
):
    """Fit ``model``; with seen anomalies, record their names so ``test`` can leave them out.

    ``defects`` (annotated Samples): afterwards, set F1-max thresholds on them against
    the held-out normals (``AnomalyModel.calibrate``).
    """
    if seen is None:
        model.fit(items, progress=progress)
    else:
        model.fit(items, progress=progress, seen=seen)
        model.fit_info_["seen_anomalies"] = seen_file_names(seen)
        model.fit_info_["seen_source"] = source
    if defects is not None:
        if getattr(model, "thresholds_", None) is None:
            raise ValueError(
                "F1-max thresholds need held-out normal images, and this fit held out none "
                "(too few training images, or a hold-out fraction of 0)"
            )
        model.calibrate(defects=defects, defect_source=defect_source, progress=progress)
    return model
