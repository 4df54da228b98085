"""Where texture images (e.g. DTD) come from when a method or command is not told.

One resolver for every user (RealNet-DTD, PRN's HEA, the synth command) so the same
environment variable and the same default apply everywhere: an explicit folder, else
``$DEFECTKIT_TEXTURES`` (``$DEFECTKIT_DTD_DIR`` is read as an older spelling), else
``../shared/data/dtd_subset`` relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

TEXTURE_ENV_VARS = ("DEFECTKIT_TEXTURES", "DEFECTKIT_DTD_DIR")
DEFAULT_TEXTURES = Path("../shared/data/dtd_subset")


def texture_candidates() -> List[Path]:
    """The folders tried, in order, when no folder is given."""
    out = [Path(os.environ[v]) for v in TEXTURE_ENV_VARS if os.environ.get(v)]
    out.append(DEFAULT_TEXTURES)
    return out


def resolve_textures(
    textures: Optional[Union[str, Path]] = None, required: bool = True, what: str = "this synthesis"
) -> Optional[Path]:
    """The texture folder to use (absolute), or None when optional and none is found.

    A folder that is given but missing is always an error; ``required`` makes the
    absence of every default an error too, naming what was tried.
    """
    if textures:
        path = Path(textures)
        if not path.is_dir():
            raise FileNotFoundError(f"texture folder not found: '{path}'")
        return path.resolve()
    candidates = texture_candidates()
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if not required:
        return None
    raise FileNotFoundError(
        f"{what} needs a folder of texture images (e.g. DTD): pass textures=DIR or set "
        f"{' / '.join('$' + v for v in TEXTURE_ENV_VARS)}; tried: " + ", ".join(str(c) for c in candidates)
    )
