"""The Open Inference Protocol (KServe v2, also Triton's HTTP API), so KServe and Triton clients work.

Endpoints: ``GET /v2`` (server metadata), ``GET /v2/health/live``, ``GET /v2/health/ready``,
``GET /v2/models/{name}`` (model metadata), ``GET /v2/models/{name}/ready`` and
``POST /v2/models/{name}/infer``. The infer request carries one input tensor ``image``:
``shape`` ``[N, H, W, 3]`` (or ``[H, W, 3]`` for one image), RGB in row-major order,
``datatype`` ``UINT8`` (0..255) or ``FP32`` (intensities in [0, 1]), ``data`` flat or
nested. The answer's outputs are, per image: ``score`` and ``normalized_score`` (FP32
``[N]``), ``label`` (BYTES ``[N]``), ``threshold`` (FP32 ``[N]``), ``boxes`` (BYTES ``[N]``,
each a JSON list as ``/predict`` gives it), and on request (``"outputs": [{"name":
"anomaly_map"}]``) ``anomaly_map`` (FP32 ``[N, S, S]``). The binary-tensor extension is not
supported.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .errors import ServeError
from .service import InferenceService
from .uploads import tensor_to_rgb

DATATYPES = ("UINT8", "FP32")
#: Outputs every answer has unless the request names others.
DEFAULT_OUTPUTS = ("score", "normalized_score", "label", "threshold", "boxes")
ALL_OUTPUTS = DEFAULT_OUTPUTS + ("anomaly_map",)


def model_metadata(service: InferenceService) -> Dict[str, Any]:
    s = int(service.scorer.output_size)
    return {
        "name": service.settings.model_name,
        "versions": ["1"],
        "platform": f"defectkit_{service.scorer.method}",
        "inputs": [
            {
                "name": "image",
                "datatype": "UINT8",
                "shape": [-1, -1, -1, 3],
                "parameters": {
                    "accepted_datatypes": list(DATATYPES),
                    "layout": "NHWC RGB; UINT8 0..255 or FP32 in [0, 1]",
                },
            }
        ],
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "normalized_score", "datatype": "FP32", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "threshold", "datatype": "FP32", "shape": [-1]},
            {"name": "boxes", "datatype": "BYTES", "shape": [-1]},
            {"name": "anomaly_map", "datatype": "FP32", "shape": [-1, s, s]},
        ],
    }


def parse_infer(body: Any, service: InferenceService) -> tuple:
    """A v2 infer request -> (images as H x W x 3 uint8, requested output names, request id)."""
    if not isinstance(body, dict):
        raise ServeError(422, "the infer request must be a JSON object with an 'inputs' list")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ServeError(422, "'inputs' must be a list of exactly one tensor (the image, shape [N, H, W, 3])")
    tensor = inputs[0]
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise ServeError(422, f"input tensor: missing field {key!r}")
    datatype = tensor["datatype"]
    if datatype not in DATATYPES:
        raise ServeError(422, f"input tensor: datatype {datatype!r} is not taken (use {' or '.join(DATATYPES)})")
    shape = tensor["shape"]
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        or len(shape) not in (3, 4)
        or shape[-1] != 3
    ):
        raise ServeError(422, f"input tensor: shape {shape!r} must be [N, H, W, 3] or [H, W, 3] with positive sizes")
    if len(shape) == 3:
        shape = [1] + shape
    n, h, w = shape[0], shape[1], shape[2]
    if n > service.settings.max_files:
        raise ServeError(413, f"input tensor: {n} images in one request; at most {service.settings.max_files}")
    from .uploads import check_pixels

    check_pixels(w, h, service.settings.max_pixels, "input tensor")
    try:
        data = np.asarray(tensor["data"], dtype=np.float64 if datatype == "FP32" else np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ServeError(422, "input tensor: 'data' must be numbers (flat, or nested as the shape)") from None
    if data.size != n * h * w * 3:
        raise ServeError(422, f"input tensor: 'data' has {data.size} values, the shape {shape} needs {n * h * w * 3}")
    data = data.reshape(n, h, w, 3)
    images = [tensor_to_rgb(data[i], datatype, f"input tensor image {i}") for i in range(n)]
    wanted = body.get("outputs")
    if wanted is None:
        names = list(DEFAULT_OUTPUTS)
    else:
        if not isinstance(wanted, list) or not all(isinstance(o, dict) and "name" in o for o in wanted):
            raise ServeError(422, "'outputs' must be a list of objects with a 'name'")
        names = [o["name"] for o in wanted]
        unknown = [x for x in names if x not in ALL_OUTPUTS]
        if unknown:
            raise ServeError(422, f"unknown outputs {unknown} (this model has {', '.join(ALL_OUTPUTS)})")
    return images, names, body.get("id")


def _fp32(values) -> List[float]:
    return [None if v is None else float(v) for v in values]


def infer_response(
    service: InferenceService, records: List[Dict[str, Any]], maps: List[np.ndarray], names: List[str], request_id: Any
) -> Dict[str, Any]:
    n = len(records)
    columns = {
        "score": ("FP32", [n], lambda: _fp32(r["score"] for r in records)),
        "normalized_score": ("FP32", [n], lambda: _fp32(r["normalized_score"] for r in records)),
        "threshold": ("FP32", [n], lambda: _fp32(r["threshold"] for r in records)),
        "label": ("BYTES", [n], lambda: [r["label"] or "" for r in records]),
        "boxes": ("BYTES", [n], lambda: [json.dumps(r["boxes"]) for r in records]),
        "anomaly_map": (
            "FP32",
            [n] + list(maps[0].shape) if maps else [0],
            lambda: np.stack(maps).astype(np.float32).ravel().tolist() if maps else [],
        ),
    }
    outputs = [
        {"name": name, "datatype": columns[name][0], "shape": columns[name][1], "data": columns[name][2]()}
        for name in names
    ]
    answer: Dict[str, Any] = {"model_name": service.settings.model_name, "model_version": "1", "outputs": outputs}
    if request_id is not None:
        answer["id"] = request_id
    return answer


def add_v2_routes(router: APIRouter, service: InferenceService) -> None:
    """Add the v2 endpoints to ``router`` (the application itself, so every route keeps its own path)."""
    from .app import score_images

    def check_name(name: str) -> None:
        if name != service.settings.model_name:
            raise ServeError(404, f"unknown model {name!r}; this server has {service.settings.model_name!r}")

    @router.get("/v2")
    async def server_metadata():
        return {"name": "defectkit", "version": __version__, "extensions": []}

    @router.get("/v2/health/live")
    async def live():
        return {"live": True}

    @router.get("/v2/health/ready")
    async def ready(request: Request):
        ok = bool(request.app.state.ready)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @router.get("/v2/models/{name}")
    async def metadata(name: str):
        check_name(name)
        return model_metadata(service)

    @router.get("/v2/models/{name}/ready")
    async def model_ready(name: str, request: Request):
        check_name(name)
        ok = bool(request.app.state.ready)
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @router.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        check_name(name)
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("application/json"):
            raise ServeError(
                415, f"send the infer request as application/json, not {content_type or 'no content type'!r}"
            )
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServeError(422, f"the infer request is not valid JSON ({exc})") from None
        images, names, request_id = await run_in_threadpool(parse_infer, body, service)
        keep_maps = "anomaly_map" in names
        records = await score_images(service, request, images, [None] * len(images), {}, keep_maps=keep_maps)
        maps = [r.pop("_map") for r in records] if keep_maps else []
        return await run_in_threadpool(infer_response, service, records, maps, names, request_id)
