"""Model files that can be opened without running code.

A pickle (what ``torch.save`` writes) may call any function while it is read, so opening
a model file someone sent you could run their code. A defectkit model file is therefore
one safetensors file: the tensors sit in its tensor table and everything else (the
parameters, the fit info, how the state nests) is a JSON document in its metadata.
Reading either part only parses data; nothing in the file can name a function to call.

JSON has no tuples, integer dict keys, NaN/inf or numpy types, and model states use all
of them (``{8: (mean, std)}``), so the document tags those explicitly and a file reads
back to exactly the payload that was written, types included.

Files from before this format (``torch.save`` archives) are still read when they hold
only plain data and tensors (``torch.load(weights_only=True)``); anything that would need
code to run is refused, never retried unsafely.
"""

from __future__ import annotations

import collections
import io
import json
import math
import pickle
import re
import struct
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import safetensors.torch
import torch

from .. import __version__
from .atomic import atomic_write_bytes

MODEL_FORMAT = "defectkit-model"
MODEL_FORMAT_VERSION = 2

#: The safetensors metadata key holding the JSON document (metadata values are strings).
METADATA_KEY = "defectkit"

PathLike = Union[str, Path]

# Dtypes every safetensors >= 0.4 stores; anything else is refused at write time so that a
# failure names the offending entry rather than surfacing from deep inside safetensors.
_TENSOR_DTYPES = frozenset(
    {
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    }
)
_NUMPY_DTYPES = frozenset(
    np.dtype(d) for d in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
)
_NUMPY_SCALAR_TYPES = frozenset(d.type for d in _NUMPY_DTYPES)
_FLOAT_SPECIALS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_SAFETENSORS_HEADER_LIMIT = 100_000_000  # safetensors refuses larger JSON headers too
_RETRAIN = "Retrain the model with this defectkit ({}): defectkit train ...".format(__version__)
_ALLOWED = (
    "only None, bool, int, float, str, list, tuple, dict (str or int keys), torch tensors, "
    "numpy arrays and numpy scalars are stored, so that the file can be opened without running code"
)


def _child(where: str, key: Union[str, int]) -> str:
    if isinstance(key, str):
        return f"{where}.{key}" if where else key
    return f"{where}[{key}]"


def _refuse(where: str, what: str) -> TypeError:
    return TypeError(f"cannot store {what} at {where or '<payload>'} in a model file: {_ALLOWED}")


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class _Encoder:
    """Payload -> JSON-ready tree, moving every array into ``self.tensors``."""

    def __init__(self) -> None:
        self.tensors: Dict[str, torch.Tensor] = {}
        self._open: set = set()  # ids of the containers being encoded, to catch cycles

    def _store(self, tensor: torch.Tensor, where: str) -> str:
        # Named by key path so that generic safetensors tools show readable names.
        base = where or "payload"
        name, n = base, 1
        while name in self.tensors:
            name, n = f"{base}#{n}", n + 1
        self.tensors[name] = tensor
        return name

    def encode(self, obj: Any, where: str) -> Any:
        t = type(obj)
        if obj is None or t is bool or t is int or t is str:
            return obj
        if t is float:
            if math.isfinite(obj):
                return obj
            return {"float": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
        if t is torch.Tensor or t is torch.nn.Parameter:
            return {"tensor": self._store(self._tensor(obj, where), where)}
        if t is np.ndarray:
            return {"ndarray": self._store(self._array(obj, where), where), "dtype": obj.dtype.str}
        if t in _NUMPY_SCALAR_TYPES:
            return {"numpy_scalar": self._store(torch.from_numpy(np.array(obj)), where), "dtype": obj.dtype.str}
        if t in (list, tuple, dict, collections.OrderedDict):
            if id(obj) in self._open:
                raise TypeError(f"{where or '<payload>'} contains itself; a model file holds a tree, not a cycle")
            self._open.add(id(obj))
            try:
                if t is list:
                    return [self.encode(v, _child(where, i)) for i, v in enumerate(obj)]
                if t is tuple:
                    return {"tuple": [self.encode(v, _child(where, i)) for i, v in enumerate(obj)]}
                tag = "dict" if t is dict else "ordered_dict"
                return {tag: self.items(obj, where)}
            finally:
                self._open.discard(id(obj))
        raise _refuse(where, f"a {_type_name(obj)}")

    def items(self, mapping: Mapping, where: str) -> List[List[Any]]:
        pairs = []
        for key, value in mapping.items():
            if type(key) is not str and type(key) is not int:
                raise _refuse(where, f"a dict key {key!r} of type {_type_name(key)}")
            pairs.append([key, self.encode(value, _child(where, key))])
        return pairs

    @staticmethod
    def _tensor(tensor: torch.Tensor, where: str) -> torch.Tensor:
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
            raise _refuse(where, f"a {tensor.layout} / quantized / meta tensor")
        if tensor.dtype not in _TENSOR_DTYPES:
            raise _refuse(where, f"a tensor of dtype {tensor.dtype}")
        # A private contiguous CPU copy: safetensors refuses tensors that share storage.
        return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)

    @staticmethod
    def _array(array: np.ndarray, where: str) -> torch.Tensor:
        native = array.dtype.newbyteorder("=")
        if native not in _NUMPY_DTYPES:
            raise _refuse(where, f"a numpy array of dtype {array.dtype}")
        return torch.from_numpy(np.array(array, dtype=native, order="C", copy=True))


def write_model_file(path: PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as one safetensors file, atomically (a crash never leaves half a model).

    Raises TypeError naming the key path of anything that is not plain data, so a model
    file can never carry an object whose loading would need code to run.
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"a model file payload is a mapping, not {_type_name(payload)}")
    encoder = _Encoder()
    document = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "payload": {"dict": encoder.items(payload, "")},
    }
    text = json.dumps(document, allow_nan=False, ensure_ascii=True, separators=(",", ":"))
    data = safetensors.torch.save(encoder.tensors, metadata={METADATA_KEY: text})
    return atomic_write_bytes(path, data)


class ModelFileError(ValueError):
    """A model file cannot be loaded (newer format, old format that needs code, ...); names the file."""


class NotAModelFileError(ModelFileError):
    """The file is not a (complete) defectkit model file: empty, truncated, corrupt or another tool's."""


#: What a defectkit model file is, for messages about a file that is not one.
MODEL_FILE_DESCRIPTION = (
    "a defectkit model file is the one file `defectkit train --out` writes: a safetensors file whose "
    "metadata holds a defectkit header"
)


def foreign_format(data: bytes) -> Optional[str]:
    """What another tool's file looks like, from its first bytes ("an ONNX model", "a PNG image", ...), or None."""
    head = data[:16]
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (e.g. a Keras model)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy array file (.npy)"
    if head.startswith(b"GGUF"):
        return "a GGUF model"
    # ONNX: a protobuf ModelProto opens with field 1 (ir_version, a small varint), then
    # producer_name / graph / opset_import fields.
    if len(data) > 3 and data[0] == 0x08 and data[1] < 0x80 and data[2] in (0x12, 0x1A, 0x22, 0x2A, 0x3A, 0x42):
        return "an ONNX model"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    sample = data[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "a text file"
    return None


class _Corrupt(Exception):
    pass


class _Decoder:
    """JSON tree + tensor table -> the payload; anything unexpected means a damaged file."""

    def __init__(self, tensors: Dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def _table(self, name: Any, where: str) -> torch.Tensor:
        if type(name) is not str or name not in self.tensors:
            raise _Corrupt(f"missing tensor {name!r} for {where or '<payload>'}")
        return self.tensors[name]

    def _numpy(self, node: dict, key: str, where: str) -> np.ndarray:
        tensor = self._table(node[key], where)
        if type(node["dtype"]) is not str:
            raise _Corrupt(f"bad numpy dtype for {where}")
        try:
            dtype = np.dtype(node["dtype"])
        except (TypeError, ValueError) as exc:
            raise _Corrupt(f"bad numpy dtype for {where}: {exc}") from None
        if dtype.newbyteorder("=") not in _NUMPY_DTYPES or tensor.dtype == torch.bfloat16:
            raise _Corrupt(f"bad numpy dtype {dtype} for {where}")
        array = tensor.numpy()
        if array.dtype != dtype.newbyteorder("="):
            raise _Corrupt(f"tensor dtype {tensor.dtype} does not match numpy dtype {dtype} for {where}")
        return array if array.dtype == dtype else array.astype(dtype)

    def pairs(self, node: Any, where: str) -> List[tuple]:
        if type(node) is not list:
            raise _Corrupt(f"bad dict at {where or '<payload>'}")
        out = []
        for pair in node:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) not in (str, int):
                raise _Corrupt(f"bad dict entry at {where or '<payload>'}")
            out.append((pair[0], self.decode(pair[1], _child(where, pair[0]))))
        return out

    def decode(self, node: Any, where: str) -> Any:
        t = type(node)
        if node is None or t in (bool, int, float, str):
            return node
        if t is list:
            return [self.decode(v, _child(where, i)) for i, v in enumerate(node)]
        if t is dict and len(node) >= 1:
            tag = next(iter(node))
            value = node[tag]
            if len(node) == 1:
                if tag == "dict":
                    return dict(self.pairs(value, where))
                if tag == "ordered_dict":
                    return collections.OrderedDict(self.pairs(value, where))
                if tag == "tuple" and type(value) is list:
                    return tuple(self.decode(v, _child(where, i)) for i, v in enumerate(value))
                if tag == "tensor":
                    return self._table(value, where)
                if tag == "float" and value in _FLOAT_SPECIALS:
                    return _FLOAT_SPECIALS[value]
            elif len(node) == 2 and "dtype" in node:
                if "ndarray" in node:
                    return self._numpy(node, "ndarray", where)
                if "numpy_scalar" in node:
                    array = self._numpy(node, "numpy_scalar", where)
                    if array.ndim == 0:
                        return array[()]
        raise _Corrupt(f"unexpected entry at {where or '<payload>'}")


def _newer_error(path: PathLike, version: int) -> ValueError:
    return ModelFileError(
        f"{path} has model format {version}, newer than this defectkit ({__version__}) reads "
        f"({MODEL_FORMAT_VERSION}); upgrade defectkit"
    )


def check_format(payload: Any, path: PathLike) -> None:
    """Refuse what is not a defectkit payload, or one from a newer defectkit than this.

    A newer file may mean something this code would misread, so it is refused with
    advice to upgrade rather than loaded half-right.
    """
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise NotAModelFileError(f"{path} is not a defectkit model file")
    version = payload.get("format_version")
    if type(version) is not int:
        raise NotAModelFileError(f"{path} is not a defectkit model file (format version {version!r})")
    if version > MODEL_FORMAT_VERSION:
        raise _newer_error(path, version)


def _torch_reads_pickles_safely() -> bool:
    """Before torch 2.6, ``weights_only=True`` could still be made to run code (CVE-2025-32434)."""
    found = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
    return bool(found) and (int(found.group(1)), int(found.group(2))) >= (2, 6)


def _read_old_format(path: Path, data: bytes) -> dict:
    """A ``torch.save`` archive from an older defectkit: only plain data and tensors may load."""
    if not _torch_reads_pickles_safely():
        raise ModelFileError(
            f"{path} was written in the old pickle-based format; torch {torch.__version__} cannot read such "
            "files without risking running code, so it was not loaded. Upgrade torch to 2.6 or later, or "
            + _RETRAIN[0].lower()
            + _RETRAIN[1:]
        )
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol is no use to the user
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needs = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        # ``from None``: torch's own message suggests retrying with weights_only=False, the
        # one thing that must not be done with a file that asks for code.
        raise ModelFileError(
            f"{path} was written in the old pickle-based format or contains code"
            + (f" (it asks for {needs.group(1)})" if needs else "")
            + "; it was not loaded, for safety. "
            + _RETRAIN
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure of the old reader means an unusable file
        raise NotAModelFileError(
            f"{path} is a model file in the old pickle-based format and is truncated or corrupt ({exc}). " + _RETRAIN
        ) from exc
    check_format(payload, path)
    return payload


def _is_torch_archive(data: bytes) -> bool:
    """A zip written by ``torch.save``: it holds ``<name>/data.pkl``."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(n.endswith("data.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return True  # a damaged torch archive: let the old-format reader say it is truncated


def read_model_file(path: PathLike) -> dict:
    """Read a model file written by ``write_model_file`` (or a plain-data old one) without pickle.

    Raises ValueError naming the file when it is not a defectkit model file, is truncated
    or corrupt, was written by a newer defectkit, or is an old-format file that would need
    code to run.
    """
    path = Path(path)
    data = path.read_bytes()
    header_size = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    # The safetensors test comes first: its header length can start with any byte, b"\x80" included.
    if not (2 <= header_size <= _SAFETENSORS_HEADER_LIMIT and data[8:9] == b"{"):
        if (data[:4] == b"PK\x03\x04" and _is_torch_archive(data)) or data[:1] == b"\x80":
            return _read_old_format(path, data)  # torch zip archive / legacy torch pickle
        if not data:
            raise NotAModelFileError(f"{path} is not a defectkit model file: it is empty (0 bytes)")
        kind = foreign_format(data)
        if kind is not None:
            raise NotAModelFileError(f"{path} is not a defectkit model file: it looks like {kind}")
        if len(data) < 9:
            raise NotAModelFileError(f"{path} is not a defectkit model file (only {len(data)} bytes; truncated?)")
        raise NotAModelFileError(f"{path} is not a defectkit model file (unrecognised content)")
    if 8 + header_size > len(data):
        raise NotAModelFileError(f"{path} is a truncated or corrupt model file (its header is cut off)")
    try:
        tensors = safetensors.torch.load(data)
        header = json.loads(data[8 : 8 + header_size])
    except Exception as exc:  # noqa: BLE001 - safetensors' errors vary by version
        raise NotAModelFileError(f"{path} is a truncated or corrupt model file ({exc})") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    text = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(text, str):
        raise NotAModelFileError(f"{path} is a safetensors file but not a defectkit model file")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NotAModelFileError(f"{path} is a truncated or corrupt model file (bad metadata: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise NotAModelFileError(f"{path} is not a defectkit model file")
    version = document.get("format_version")
    if type(version) is not int:
        raise NotAModelFileError(f"{path} is a corrupt model file (format version {version!r})")
    if version > MODEL_FORMAT_VERSION:
        raise _newer_error(path, version)
    root = document.get("payload")
    if type(root) is not dict or list(root) != ["dict"]:
        raise NotAModelFileError(f"{path} is a corrupt model file (no payload)")
    try:
        return _Decoder(tensors).decode(root, "")
    except (_Corrupt, RecursionError) as exc:
        raise NotAModelFileError(f"{path} is a corrupt model file ({exc})") from None
