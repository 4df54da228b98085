"""``defectkit export``: one fitted model -> one ONNX file, checked against torch before it is written.

Steps: the model's scoring graph (``graph.scoring_graph``) is traced with
``torch.onnx.export(dynamo=True)`` at opset 18 with a dynamic batch dimension; the
metadata (``deploy.onnx_model.OnnxMetadata``) goes into ``metadata_props``; the graph is
opened by the runtime (``OnnxScorer``) and compared with the torch model on real images
(``parity.check_parity``). Only when parity holds are ``M.onnx`` and ``M.parity.json``
written, each atomically; an existing file is replaced only with ``force``.

Check images: ``check`` (a folder), else the held-out normal images the model file
names (``fit_info["held_out_files"]``, recorded at fit), when they are still readable.
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

from .parity import MAX_CHECK_IMAGES, PARITY_TOLERANCE, ParityError, ParityReport, check_parity

PathLike = Union[str, Path]
#: the ONNX opset of exported graphs
OPSET = 18
#: largest batch the exported graph declares (its batch dimension is dynamic up to this)
MAX_BATCH = 4096


@dataclass
class ExportResult:
    onnx_path: Path
    parity_path: Path
    parity: ParityReport
    export_seconds: float


def parity_path_for(out: PathLike) -> Path:
    """``M.onnx`` -> ``M.parity.json`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".parity.json")


def check_images(model, check: Optional[PathLike]) -> Tuple[List[Path], str]:
    """The images parity is checked on, and where they come from (ValueError when there are none)."""
    from ..data.images import list_images

    if check is not None:
        paths = list_images(check)
        if not paths:
            raise FileNotFoundError(f"--check {check}: no images in this folder")
        return paths[:MAX_CHECK_IMAGES], f"images in {check}"
    named = [Path(p) for p in (getattr(model, "fit_info_", {}) or {}).get("held_out_files", [])]
    readable = [p for p in named if p.is_file()]
    if not readable:
        why = (
            "its held-out images are no longer at the paths it recorded"
            if named
            else "the model file does not record where its held-out normal images are (trained by an older "
            "defectkit, or without a held-out split)"
        )
        raise ValueError(f"no images to check parity on: {why}; pass --check DIR (normal images of this part)")
    return readable[:MAX_CHECK_IMAGES], "held-out normal training images named in the model file"


def onnx_graph(model):
    """The model's scoring graph as an ``onnx.ModelProto`` (no metadata yet), traced on the CPU."""
    import torch

    from ..deploy.onnx_model import IMAGE_INPUT, MAP_OUTPUT, SCORE_OUTPUT, VALID_INPUT
    from .graph import scoring_graph

    graph = scoring_graph(model).eval()
    s = model.preprocess.output_size
    image = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    args: Tuple = (image,)
    names = [IMAGE_INPUT]
    batch = torch.export.Dim("N", min=1, max=MAX_BATCH)
    shapes = {"image": {0: batch}}
    if graph.keep:
        valid = torch.ones(2, s, s)
        valid[:, :, : s // 4] = 0.0  # a padded example: the traced graph must not assume all pixels are real
        args = (image, valid)
        names.append(VALID_INPUT)
        shapes["valid"] = {0: batch}
    with torch.no_grad():
        graph(*args)  # first call builds cached operators (e.g. the separable upsampler), so they become constants
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph,
                args,
                dynamo=True,
                opset_version=OPSET,
                input_names=names,
                output_names=[SCORE_OUTPUT, MAP_OUTPUT],
                dynamic_shapes=shapes,
                verbose=False,
            )
    proto = program.model_proto
    proto.producer_name = "defectkit"
    return proto


def metadata_of(model):
    from .. import __version__
    from ..deploy.onnx_model import IMAGE_INPUT, VALID_INPUT, OnnxMetadata
    from ..utils.model_file import MODEL_FORMAT_VERSION

    backbone = {"name": model.backbone, "weights_id": model.backbone_.weights_id, "revision": model.backbone_.revision}
    pre = model.preprocess
    preprocess = {"image_size": pre.image_size, "crop_size": pre.crop_size, "resize": pre.resize}
    inputs = [IMAGE_INPUT] + ([VALID_INPUT] if pre.resize == "keep" else [])
    params = {k: v for k, v in model.get_params().items() if k not in ("device", "cache_dir")}
    info = dict(getattr(model, "fit_info_", {}) or {})
    info.pop("curve", None)
    return OnnxMetadata(
        method=model.method,
        backbone=backbone,
        preprocess=preprocess,
        inputs=inputs,
        thresholds=getattr(model, "thresholds_", None),
        defectkit_version=__version__,
        model_format_version=MODEL_FORMAT_VERSION,
        params=params,
        fit_info=info,
    )


def export_model(
    model, out: PathLike, check: Optional[PathLike] = None, force: bool = False, tolerance: float = PARITY_TOLERANCE
) -> ExportResult:
    """Export fitted ``model`` to ``out`` (.onnx) after checking parity; see the module docstring.

    Raises FileExistsError (``out`` or its parity file exists, without ``force``), ValueError
    (tiled model, no check images) or ParityError (parity does not hold: nothing is written)."""
    import time

    import onnxruntime
    import torch

    from ..deploy.onnx_model import set_props
    from ..deploy.onnx_scorer import OnnxScorer
    from ..utils.atomic import atomic_write_bytes, atomic_write_text
    from .graph import check_exportable

    out = Path(out)
    parity_out = parity_path_for(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out {out}: an exported model file ends in .onnx")
    for target in (out, parity_out):
        if target.exists() and not force:
            raise FileExistsError(f"{target} already exists; pass --force to replace it")
    check_exportable(model)
    paths, source = check_images(model, check)
    t0 = time.perf_counter()
    model.set_params(device="cpu")
    proto = onnx_graph(model)
    set_props(proto, metadata_of(model).to_props())
    data = proto.SerializeToString()
    seconds = time.perf_counter() - t0
    scorer = OnnxScorer(data, batch_size=8, name=str(out))
    report = check_parity(model, scorer, paths, source, tolerance)
    if not report.holds:
        raise ParityError(f"export refused, the ONNX graph does not score like the torch model: {report.summary()}")
    record = {
        **report.to_dict(),
        "method": model.method,
        "model": str(out),
        "opset": OPSET,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "export_seconds": round(seconds, 2),
    }
    atomic_write_bytes(out, data)
    atomic_write_text(parity_out, json.dumps(record, indent=2) + "\n")
    return ExportResult(out, parity_out, report, seconds)
