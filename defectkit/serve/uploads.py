"""Uploaded bytes -> an H x W x 3 uint8 RGB array, or a ServeError with the right status.

The order of the checks is what keeps a bad upload cheap: the content (not the file name
or the declared content type) decides whether it is an image at all (415); the header's
dimensions are checked against the pixel limit before a single pixel is decoded (413, so
a 30000 x 30000 PNG of a few hundred kB costs nothing); only then is it decoded, where a
truncated file fails (422). Only the formats ``defectkit predict`` reads are opened
(PNG, JPEG, BMP, TIFF, WebP): Pillow's other plug-ins (EPS runs Ghostscript) are never
reached from the network. The pixels are converted by the same rules as
``defectkit.data.images.read_image``, so an upload scores exactly like the file.
"""

from __future__ import annotations

import io
import warnings
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ServeError

#: Pillow format names the service decodes (the image files ``defectkit predict`` reads).
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
#: Leading bytes of those formats: a file that starts like one but cannot be opened is cut off (422), not foreign (415).
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def looks_like_image(data: bytes) -> bool:
    """True when ``data`` starts with the signature of an accepted format."""
    return any(data.startswith(sig) for sig in _SIGNATURES) and (not data.startswith(b"RIFF") or data[8:12] == b"WEBP")


def check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    """413 when ``width x height`` exceeds ``max_pixels``."""
    if width * height > max_pixels:
        raise ServeError(
            413,
            f"{what}: image of {width}x{height} = {width * height} pixels is over the limit of "
            f"{max_pixels} pixels (refused before decoding, as a possible decompression bomb)",
        )


def decode_image(data: bytes, max_pixels: int, what: str = "file") -> np.ndarray:
    """Decode one upload; ``what`` names it in error messages (the field and file name)."""
    if not data:
        raise ServeError(422, f"{what}: the upload is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            im = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ServeError(
            413, f"{what}: image too large, refused before decoding as a possible decompression bomb ({exc})"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if looks_like_image(data):
            raise ServeError(422, f"{what}: truncated or corrupt image header ({type(exc).__name__})") from None
        raise ServeError(
            415,
            f"{what}: not an image by its content (accepted: "
            f"{', '.join(f.lower() for f in ACCEPTED_FORMATS)}), whatever its name or content type",
        ) from None
    with im:
        check_pixels(im.size[0], im.size[1], max_pixels, what)
        try:
            im.seek(0)
        except (EOFError, AttributeError):
            pass
        try:
            im.load()
        except Exception as exc:  # noqa: BLE001 - any decoder failure of a bad upload is the client's
            raise ServeError(422, f"{what}: truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
        return to_rgb(im, what)


def to_rgb(im: Image.Image, what: str) -> np.ndarray:
    """``read_image``'s conversion rules (gray, 16-bit, alpha over black, palette) on a decoded image."""
    from ..data.images import ImageReadError, _to_rgb

    try:
        rgb = _to_rgb(what, im)  # type: ignore[arg-type]  # only used to name the image in errors
    except ImageReadError as exc:
        raise ServeError(422, f"{what}: {exc.reason}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ServeError(422, f"{what}: unexpected decoded shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def tensor_to_rgb(array: np.ndarray, datatype: str, what: str, max_pixels: Optional[int] = None) -> np.ndarray:
    """One H x W x 3 image tensor (v2 ``UINT8`` 0..255, or ``FP32`` in [0, 1]) -> uint8 RGB."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise ServeError(422, f"{what}: expected H x W x 3 (RGB) per image, got shape {list(array.shape)}")
    if max_pixels is not None:
        check_pixels(array.shape[1], array.shape[0], max_pixels, what)
    if datatype == "UINT8":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ServeError(422, f"{what}: UINT8 values must be 0..255")
        return np.ascontiguousarray(array, dtype=np.uint8)
    values = np.asarray(array, dtype=np.float64)
    if values.size and (not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0):
        raise ServeError(422, f"{what}: FP32 values must be finite intensities in [0, 1] (UINT8 takes 0..255)")
    return np.round(values * 255.0).astype(np.uint8)
