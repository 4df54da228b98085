"""The FastAPI application: routes, and every error as ``{"error": ...}`` with its status.

Uploads are read by hand (not with FastAPI's ``File`` parameters) so that each problem
gets the status docs/serving.md promises: a body that is not multipart is 415, a missing
field or a bad query parameter 422, an image that is not one by its content 415.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .batcher import QueueFull
from .errors import ServeError
from .middleware import AccessLog, ApiKey, BodyLimit
from .service import InferenceService, Job
from .settings import RETRY_AFTER_S, ServeSettings
from .uploads import decode_image

#: Query parameters of /predict and /predict/batch, all booleans.
PREDICT_FLAGS = ("mask", "heatmap")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
#: The bulk endpoints accept this many times --max-bytes in one body (v2 JSON spends ~4 bytes per pixel value).
BULK_BODY_FACTOR = 4


def _error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def parse_flags(request: Request) -> Dict[str, bool]:
    """``?mask=true&heatmap=false`` -> flags; an unknown parameter or a non-boolean value is 422."""
    flags = {name: False for name in PREDICT_FLAGS}
    for key, value in request.query_params.multi_items():
        if key not in flags:
            raise ServeError(422, f"unknown query parameter {key!r} (this endpoint takes {', '.join(PREDICT_FLAGS)})")
        v = value.strip().lower()
        if v not in _TRUE + _FALSE:
            raise ServeError(422, f"query parameter {key}={value!r} is not a boolean (use true or false)")
        flags[key] = v in _TRUE
    return flags


async def read_uploads(request: Request, field: str, settings: ServeSettings, at_most: int) -> List[Tuple[str, bytes]]:
    """The files of multipart ``field`` as (name for messages, bytes)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ServeError(
            415,
            f"send the image as multipart/form-data with the field {field!r}, not "
            f"{content_type or 'a body without a content type'!r}",
        )
    try:
        form = await request.form(max_files=at_most + 1, max_fields=at_most + 8)
    except StarletteHTTPException as exc:
        raise ServeError(422, f"malformed multipart body: {exc.detail}") from None
    try:
        values = form.getlist(field)
        others = sorted(set(form.keys()) - {field})
        if not values:
            got = f"; got {', '.join(repr(o) for o in others)}" if others else ""
            raise ServeError(422, f"missing multipart field {field!r}{got}")
        if len(values) > 1 and at_most == 1:
            raise ServeError(
                422,
                f"{len(values)} files in the field {field!r}; this endpoint takes one "
                "(POST /predict/batch takes several)",
            )
        if len(values) > at_most:
            raise ServeError(413, f"{len(values)} files in one request; at most {at_most} are taken")
        uploads = []
        for i, value in enumerate(values):
            what = f"{field}[{i}]" if at_most > 1 else field
            if not isinstance(value, UploadFile):
                raise ServeError(422, f"field {what!r} is a text value, not a file upload")
            what += f" ({value.filename!r})" if value.filename else ""
            data = await value.read()
            if len(data) > settings.max_bytes:
                raise ServeError(
                    413, f"{what}: {len(data)} bytes is over the limit of {settings.max_bytes} bytes (--max-bytes)"
                )
            uploads.append((what, data, value.filename))
        return uploads
    finally:
        await form.close()


async def score_images(
    service: InferenceService,
    request: Request,
    images: list,
    names: list,
    flags: Dict[str, bool],
    keep_maps: bool = False,
) -> List[Dict[str, Any]]:
    """Queue decoded images, wait for their scores, and build their records (``keep_maps``: each
    record also holds its anomaly map under ``"_map"``, for the v2 ``anomaly_map`` output)."""
    jobs = [Job(image, display=flags.get("heatmap", False)) for image in images]
    try:
        scored = await service.batcher.submit(jobs)
    except QueueFull as exc:
        raise ServeError(503, f"busy: {exc}; retry in {RETRY_AFTER_S} s", {"Retry-After": str(RETRY_AFTER_S)}) from None
    except RuntimeError as exc:
        raise ServeError(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)}) from None
    sizes = [(im.shape[1], im.shape[0]) for im in images]
    records = await run_in_threadpool(
        service.records, scored, sizes, names, flags.get("mask", False), flags.get("heatmap", False)
    )
    for record, one in zip(records, scored):
        service.metrics.observe_label(record["label"])
        if keep_maps:
            record["_map"] = one.amap
    request.scope.setdefault("state", {})["log"] = {"images": len(records), "labels": [r["label"] for r in records]}
    return records


def create_app(scorer, settings: Optional[ServeSettings] = None) -> FastAPI:
    """The service for ``scorer`` (any :class:`~defectkit.deploy.scorer.Scorer`)."""
    from .v2 import add_v2_routes

    settings = settings or ServeSettings()
    service = InferenceService(scorer, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.batcher.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await service.batcher.stop()  # requests still queued are answered first

    app = FastAPI(
        title="defectkit",
        version=__version__,
        lifespan=lifespan,
        description="Industrial visual anomaly detection: one good/defect decision per image.",
    )
    app.state.ready = False
    app.state.service = service

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        return _error(500, f"internal error ({type(exc).__name__}); the service is still running")

    @app.get("/health")
    async def health():
        """Alive (no API key needed)."""
        return {"status": "alive"}

    @app.get("/ready")
    async def ready():
        """200 once the model is loaded and the scoring queue runs; 503 before and while shutting down."""
        if not app.state.ready:
            return JSONResponse({"ready": False, "error": "not ready"}, status_code=503)
        return {"ready": True}

    @app.get("/model")
    async def model():
        return service.describe()

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.post("/predict")
    async def predict(request: Request):
        """One image in the multipart field ``file`` -> its record."""
        flags = parse_flags(request)
        ((what, data, filename),) = await read_uploads(request, "file", settings, at_most=1)
        image = await run_in_threadpool(decode_image, data, settings.max_pixels, what)
        return (await score_images(service, request, [image], [filename], flags))[0]

    @app.post("/predict/batch")
    async def predict_batch(request: Request):
        """Up to ``max_files`` images in the multipart field ``files`` -> their records, in order."""
        flags = parse_flags(request)
        uploads = await read_uploads(request, "files", settings, at_most=settings.max_files)

        def decode_all():
            return [decode_image(data, settings.max_pixels, what) for what, data, _ in uploads]

        images = await run_in_threadpool(decode_all)
        return await score_images(service, request, images, [u[2] for u in uploads], flags)

    add_v2_routes(app.router, service)

    def body_limit(scope) -> int:
        path = scope.get("path", "")
        bulk = path == "/predict/batch" or path.startswith("/v2/")
        return settings.max_bytes * BULK_BODY_FACTOR if bulk else settings.max_bytes + 64 * 1024  # multipart framing

    app.add_middleware(BodyLimit, max_bytes=body_limit)
    app.add_middleware(ApiKey, key=settings.api_key)
    app.add_middleware(AccessLog, metrics=service.metrics, routes_of=lambda: app.router.routes)
    return app
