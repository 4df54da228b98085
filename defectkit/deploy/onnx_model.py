"""What an exported ONNX model file carries besides its graph, read and re-written without torch.

The metadata lives in the file's ``metadata_props`` (string key/value pairs), so the one
``.onnx`` file is the whole artefact: method, backbone, preprocessing (image size, crop,
resize mode), the inputs the graph takes, the decision thresholds and how they were
chosen, the held-out normal score statistics, and the defectkit and model-file format
versions. Structured values are JSON strings. Reading uses onnxruntime (the session the
runtime opens anyway); re-writing (``defectkit threshold --model M.onnx``) uses the
``onnx`` package and writes atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from .thresholds import Thresholds

PathLike = Union[str, Path]

#: ``defectkit.format`` of an exported model, and the version of this metadata layout.
ONNX_FORMAT = "defectkit-onnx"
ONNX_FORMAT_VERSION = 1
#: Graph input names: the image batch, and (``resize="keep"`` models) the real-pixel mask.
IMAGE_INPUT, VALID_INPUT = "image", "valid"
#: Graph output names.
SCORE_OUTPUT, MAP_OUTPUT = "score", "anomaly_map"

#: metadata keys holding JSON values
JSON_KEYS = ("backbone", "preprocess", "thresholds", "score_stats", "params", "inputs", "fit_info")
PREFIX = "defectkit."


@dataclass
class OnnxMetadata:
    """The defectkit metadata of an exported model (``to_props`` / ``from_props`` for the file)."""

    method: str
    backbone: Dict[str, Any]
    preprocess: Dict[str, Any]
    inputs: list
    thresholds: Optional[Thresholds]
    defectkit_version: str
    model_format_version: int
    params: Dict[str, Any]
    fit_info: Dict[str, Any]
    format_version: int = ONNX_FORMAT_VERSION

    @property
    def thresholds_chosen(self) -> str:
        return "none: the model stores no thresholds" if self.thresholds is None else self.thresholds.describe()

    def to_props(self) -> Dict[str, str]:
        """Every value as a string, keys prefixed ``defectkit.``."""
        t = self.thresholds
        values: Dict[str, Any] = {
            "format": ONNX_FORMAT,
            "format_version": str(self.format_version),
            "version": self.defectkit_version,
            "model_format_version": str(self.model_format_version),
            "method": self.method,
            "backbone": self.backbone,
            "image_size": str(self.preprocess.get("image_size")),
            "crop_size": str(self.preprocess.get("crop_size")),
            "resize": self.preprocess.get("resize", "square"),
            "preprocess": self.preprocess,
            "inputs": self.inputs,
            "thresholds": None if t is None else t.to_dict(),
            "thresholds_chosen": self.thresholds_chosen,
            "image_threshold": "" if t is None else repr(float(t.image)),
            "pixel_threshold": "" if t is None or t.pixel is None else repr(float(t.pixel)),
            "score_stats": None if t is None else t.stats,
            "params": self.params,
            "fit_info": self.fit_info,
        }
        return {PREFIX + k: (json.dumps(v, default=str) if k in JSON_KEYS else str(v)) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], path: PathLike = "<model>") -> "OnnxMetadata":
        """Inverse of ``to_props``; ValueError naming ``path`` for a file defectkit did not export."""
        if props.get(PREFIX + "format") != ONNX_FORMAT:
            raise ValueError(
                f"{path}: not an ONNX model exported by defectkit (no '{PREFIX}format' "
                f"= '{ONNX_FORMAT}' in its metadata); export one with `defectkit export`"
            )
        version = int(props.get(PREFIX + "format_version", "0"))
        if version > ONNX_FORMAT_VERSION:
            raise ValueError(
                f"{path}: exported by a newer defectkit (metadata format {version}, this one reads "
                f"up to {ONNX_FORMAT_VERSION}); upgrade defectkit"
            )

        def value(key: str, default: Any = None) -> Any:
            raw = props.get(PREFIX + key)
            if raw is None:
                return default
            return json.loads(raw) if key in JSON_KEYS else raw

        stored = value("thresholds")
        try:
            thresholds = None if stored is None else Thresholds.from_dict(stored)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: the stored thresholds are unusable ({exc}); re-set them with "
                "`defectkit threshold --model ... --normals DIR`"
            ) from None
        return cls(
            method=value("method"),
            backbone=value("backbone", {}),
            preprocess=value("preprocess"),
            inputs=value("inputs", [IMAGE_INPUT]),
            thresholds=thresholds,
            defectkit_version=value("version", "?"),
            model_format_version=int(value("model_format_version", "0")),
            params=value("params", {}),
            fit_info=value("fit_info", {}),
            format_version=version,
        )


def read_props(path: PathLike) -> Dict[str, str]:
    """The ``metadata_props`` of an ONNX file, read with the ``onnx`` package (no session)."""
    onnx = _onnx()
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def rewrite_metadata(path: PathLike, metadata: OnnxMetadata, out: PathLike) -> Path:
    """Write ``path``'s graph with ``metadata`` to ``out`` atomically (``out`` may be ``path``)."""
    from ..utils.atomic import atomic_write_bytes

    onnx = _onnx()
    model = onnx.load(str(path))
    set_props(model, metadata.to_props())
    return atomic_write_bytes(out, model.SerializeToString())


def set_props(model: Any, props: Mapping[str, str]) -> None:
    """Replace the ``defectkit.*`` entries of an ``onnx.ModelProto``'s metadata_props with ``props``."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, val in keep + sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, val


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is a runtime dependency
        raise ImportError("re-writing an ONNX model needs the onnx package: pip install onnx") from exc
    return onnx
