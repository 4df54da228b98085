"""Shared test helpers: where the read-only real data lives, and a skip marker for
tests that need it (it sits beside the repository, not in it: ../shared/data)."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one torch thread avoids oversubscription on a shared machine. A module
    uses it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def shared_data_dir() -> Path:
    """``<repo>/../shared/data`` (may be absent in a fresh clone; CI has it)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


MVTEC_BOTTLE = shared_data_dir() / "mvtec_ad" / "bottle"

#: ``@requires_shared_data`` skips a test when ../shared/data/mvtec_ad/bottle is absent.
requires_shared_data = pytest.mark.skipif(
    not MVTEC_BOTTLE.is_dir(),
    reason="../shared/data/mvtec_ad/bottle not found: real-data tests need the shared "
    "data folder beside the repository",
)
