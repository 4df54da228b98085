"""Reading images and masks from disk into plain numpy arrays.

Why this module exists: every model in defectkit sees images as HxWx3 uint8 RGB and
masks as HxW bool, whatever the file held (grayscale, 16-bit, alpha, palette, CMYK,
float).  A silent difference in how one file is converted shows up later as a
mysterious anomaly score, so every conversion rule lives here, once, and every
failure is an ``ImageReadError`` that names the file and the problem.

Conversion rules of ``read_image`` (by Pillow mode):

* ``RGB``: as stored.  ``RGBX``/``YCbCr``/``LAB``/``HSV``/``CMYK``: Pillow's
  conversion to RGB (CMYK uses Pillow's plain ink formula, no ICC profile).
* ``L`` / ``1``: gray value copied to the three channels (``1`` -> 0 or 255).
* ``I;16`` family (16-bit): scaled by the real bit depth, ``round(v * 255 / (2**b - 1))``
  with ``b`` = 16, or the TIFF ``BitsPerSample`` tag when it says fewer bits (12-bit
  camera TIFFs).  Never clipped: 65535 -> 255, 32768 -> 128.
* ``I`` (32-bit int): Pillow's container for 16-bit data; treated as 16-bit (or the
  TIFF tag's bit depth when <= 16).  Values outside that range raise, because any
  guess would make images of one data set incomparable.
* ``F`` (32-bit float): intensities in [0, 1] (the usual float-TIFF convention),
  scaled by 255.  Non-finite values or values outside [0, 1] raise.
* Alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency): composited over black,
  ``c * a / 255``.  Transparent pixels are "no object", and black is what the
  background of an object photographed on a dark table looks like; dropping alpha
  instead would resurrect whatever colour an editor left in transparent pixels.
  Premultiplied ``RGBa``/``La`` are already over black: their colour is used as is.
* ``P`` (palette) without transparency: the palette colours.

EXIF orientation is NOT applied: masks are drawn on the stored pixel grid, so the
image must stay on that grid too.  Multi-frame files (TIFF stacks, GIF): first frame.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

PathLike = Union[str, "os.PathLike[str]"]

#: File extensions (lower case, with dot) that ``list_images`` accepts, any case.
IMAGE_EXTENSIONS: Tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;16LS", "I;16BS")


class ImageReadError(ValueError):
    """A file could not be read as an image or mask.

    ``path`` is the file, ``reason`` a short human-readable cause (missing, not an
    image, truncated/corrupt, unsupported mode, ...).  Subclasses ``ValueError`` so
    callers that only know "bad input" still catch it.
    """

    def __init__(self, path: PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image '{self.path}': {reason}")

    def __reduce__(self):  # keep picklable across worker processes
        return (type(self), (self.path, self.reason))


def _open_decoded(path: PathLike) -> Image.Image:
    """Open ``path`` and fully decode its first frame, or raise ImageReadError.

    ``Image.open`` only reads the header; ``load()`` decodes the pixels, which is
    where truncated or corrupt files fail.  We never rely on the global
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` (some library may have switched it on to
    "fix" a warning): when it is on, Pillow pads truncated files with garbage, so we
    refuse to read at all rather than return that garbage.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a directory, not an image file")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageReadError(
            p,
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is enabled globally; truncated files "
            "would be padded silently, so defectkit refuses to read images until it is "
            "set back to False",
        )
    try:
        if p.stat().st_size == 0:
            raise ImageReadError(p, "file is empty (0 bytes)")
        with Image.open(p) as im:
            _check_pixel_count(p, im)
            try:
                im.seek(0)
            except (EOFError, AttributeError):
                pass
            im.load()
            # Detach from the file handle; copy() drops format-specific attributes
            # (TIFF tags), so keep the one we need in .info.
            bits = _tiff_bit_depth(im)
            out = im.copy()
            if bits is not None:
                out.info["defectkit_bits_per_sample"] = bits
            return out
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(p, "not a recognised image format (not an image, or its header is cut off)") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(p, f"image too large, refused as a possible decompression bomb ({e})") from None
    except PermissionError:
        raise ImageReadError(p, "permission denied") from None
    except (OSError, SyntaxError, EOFError, struct.error, zlib.error, ValueError, IndexError) as e:
        # Pillow reports truncated data as OSError("image file is truncated ..."),
        # broken PNG chunks as SyntaxError, bad zlib streams as zlib.error, ...
        raise ImageReadError(p, f"truncated or corrupt image data ({type(e).__name__}: {e})") from None


def _check_pixel_count(path: Path, im: Image.Image) -> None:
    """Refuse, from the header alone, an image with more pixels than Pillow's decompression-bomb
    limit. Pillow itself only warns between 1x and 2x that limit and would then allocate the
    whole image; a crafted header claiming 100000x100000 pixels must cost nothing."""
    limit = Image.MAX_IMAGE_PIXELS
    w, h = im.size
    if limit is not None and w * h > limit:
        raise ImageReadError(
            path,
            f"image too large: its header claims {w}x{h} = {w * h} pixels, more than the limit of "
            f"{limit} (PIL.Image.MAX_IMAGE_PIXELS), refused as a possible decompression bomb",
        )


def _tiff_bit_depth(im: Image.Image) -> Optional[int]:
    """BitsPerSample of a TIFF (first sample), or None when not a TIFF / not tagged."""
    if "defectkit_bits_per_sample" in im.info:
        return int(im.info["defectkit_bits_per_sample"])
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return None
    bits = tags.get(258)
    if isinstance(bits, (tuple, list)):
        bits = bits[0] if bits else None
    try:
        return int(bits) if bits else None
    except (TypeError, ValueError):
        return None


def _high_depth_to_uint8(path: Path, im: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer gray image -> HxW uint8, scaled by its bit depth."""
    arr = np.asarray(im)
    arr = arr.astype(np.int64)
    bits = 16
    tagged = _tiff_bit_depth(im)
    if tagged is not None and 1 <= tagged < 16:
        bits = tagged
    top = (1 << bits) - 1
    if arr.size and (arr.min() < 0 or arr.max() > top):
        raise ImageReadError(
            path,
            f"unsupported {im.mode} image: values {arr.min()}..{arr.max()} exceed the {bits}-bit range 0..{top}",
        )
    # Exact rounding in integers: round(v * 255 / top).
    return ((arr * 255 * 2 + top) // (2 * top)).astype(np.uint8)


def _float_to_uint8(path: Path, im: Image.Image) -> np.ndarray:
    arr = np.asarray(im, dtype=np.float64)
    if arr.size:
        if not np.isfinite(arr).all():
            raise ImageReadError(path, "unsupported float image: contains NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageReadError(
                path,
                f"unsupported float image: values {lo:g}..{hi:g} are outside [0, 1] "
                "(defectkit reads float images as intensities in [0, 1])",
            )
    return np.round(arr * 255.0).astype(np.uint8)


def _over_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite uint8 colour over black with uint8 alpha: round(c * a / 255)."""
    c = rgb.astype(np.uint32) * alpha.astype(np.uint32)[..., None]
    return ((c * 2 + 255) // 510).astype(np.uint8)


def _to_rgb(path: Path, im: Image.Image) -> np.ndarray:
    """Apply the module's conversion rules; returns a fresh HxWx3 uint8 array."""
    mode = im.mode
    if mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if mode in ("L", "1"):
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        gray = _high_depth_to_uint8(path, im)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = _float_to_uint8(path, im)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "RGBa":  # premultiplied: colour already composited over black
        return np.array(im, dtype=np.uint8)[..., :3].copy()
    if mode == "La":
        gray = np.asarray(im, dtype=np.uint8)[..., 0]
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P" and "transparency" not in im.info:
        return np.array(im.convert("RGB"), dtype=np.uint8)
    if mode in ("RGBA", "LA", "PA", "P"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        return _over_black(rgba[..., :3], rgba[..., 3])
    try:
        return np.array(im.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as e:
        raise ImageReadError(path, f"unsupported image mode {mode!r} ({e})") from None


def read_image(path: PathLike) -> np.ndarray:
    """Read ``path`` as an HxWx3 uint8 RGB array (rules in the module docstring).

    Raises ImageReadError (naming the file) when the file is missing, is not an
    image, is truncated or corrupt, or has a mode/value range we will not guess about.
    """
    p = Path(path)
    im = _open_decoded(p)
    rgb = _to_rgb(p, im)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(p, f"unexpected decoded shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _as_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def resize_mask(mask: np.ndarray, size: Union[int, Sequence[int]]) -> np.ndarray:
    """Resize an HxW mask (nonzero = defect) to ``size`` (int or (height, width)) with
    nearest neighbour, so the result stays strictly binary.  Returns bool."""
    h, w = _as_hw(size)
    m = np.asarray(mask) > 0
    if m.shape == (h, w):
        return m.copy()
    im = Image.fromarray(m.astype(np.uint8) * 255, mode="L")
    return np.asarray(im.resize((w, h), Image.Resampling.NEAREST)) > 0


def read_mask(path: PathLike, size: Union[int, Sequence[int], None] = None) -> np.ndarray:
    """Read a ground-truth mask as an HxW bool array, True where the value is > 0.

    Gray, 1-bit and 16/32-bit masks are thresholded on the raw stored value (so a
    16-bit mask with value 1 is a defect, not rounded to 0 by an 8-bit scaling);
    palette masks on the palette index (VOC-style label masks, index 0 = background);
    colour masks on "any channel > 0" after the read_image conversion (alpha over
    black).  Masks must be lossless: a JPEG mask's ringing would count as defect.

    ``size``: optional int or (height, width) -- note: numpy order, not PIL's
    (width, height) -- to resize to with nearest neighbour.

    ``path`` may be a folder of masks (MVTec LOCO AD keeps one file per defect of an
    image): the result is their union; they must all have the same size.
    """
    p = Path(path)
    if p.is_dir():
        return _read_mask_folder(p, size)
    im = _open_decoded(p)
    mode = im.mode
    if mode in ("1", "L", "P", "I", "F") or mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(im.convert("L") if mode == "1" else im)
        if mode == "F" and arr.size and not np.isfinite(arr).all():
            raise ImageReadError(p, "unsupported float mask: contains NaN or infinity")
        m = arr > 0
    elif mode == "LA":
        la = np.asarray(im)
        m = (la[..., 0] > 0) & (la[..., 1] > 0)
    else:
        m = _to_rgb(p, im).max(axis=2) > 0
    if m.ndim != 2:
        raise ImageReadError(p, f"unexpected decoded mask shape {m.shape}")
    if size is not None:
        m = resize_mask(m, size)
    return np.ascontiguousarray(m, dtype=bool)


def _read_mask_folder(folder: Path, size) -> np.ndarray:
    files = list_images(folder)
    if not files:
        raise ImageReadError(folder, "mask folder holds no mask images")
    union = None
    for f in files:
        m = read_mask(f)
        if union is None:
            union = m
        elif m.shape != union.shape:
            raise ImageReadError(
                f,
                f"mask is {m.shape[1]}x{m.shape[0]} px but '{files[0].name}' in the same "
                f"folder is {union.shape[1]}x{union.shape[0]} px",
            )
        else:
            union |= m
    if size is not None:
        union = resize_mask(union, size)
    return np.ascontiguousarray(union, dtype=bool)


def is_image_file(path: PathLike) -> bool:
    """True for a regular, non-hidden file with one of IMAGE_EXTENSIONS (any case).

    Hidden files are skipped because macOS copies leave ``._000.png`` resource-fork
    files beside every image, which are not images.
    """
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()


def list_images(folder: PathLike) -> list:
    """Image files directly inside ``folder`` (not recursive), sorted by file name.

    Sorted so that sample order, and therefore every seeded split, is the same on
    every machine and file system.  Raises FileNotFoundError / NotADirectoryError
    naming the folder when it is not a directory.
    """
    d = Path(folder)
    if not d.exists():
        raise FileNotFoundError(f"image folder not found: '{d}'")
    if not d.is_dir():
        raise NotADirectoryError(f"not a folder: '{d}'")
    return sorted((p for p in d.iterdir() if is_image_file(p)), key=lambda p: p.name)
