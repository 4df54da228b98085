"""Connecting to Ray, the optional engine that spreads benchmark runs and prediction over a cluster.

Ray is an extra (``pip install 'defectkit[ray]'``): a plain install never imports it, and
asking for ``--engine ray`` without it is an error that says what to install. A session
that is already connected (a test session, a notebook) is reused and left running; a
session this module starts is shut down when the work is done.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Optional

INSTALL_HINT = "pip install 'defectkit[ray]'"


def import_ray():
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (prediction needs Ray Data, part of the extra)
    except ImportError as exc:
        raise ImportError(
            f"--engine ray needs Ray with Ray Data, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: Optional[str] = None, num_cpus: Optional[int] = None) -> Iterator[object]:
    """Connected Ray for the duration of the block.

    ``address`` None starts a private single-machine Ray (``num_cpus`` of this machine,
    no dashboard); ``auto`` joins the cluster this machine belongs to (started with
    ``ray start``); ``HOST:PORT`` joins that head node. Workers inherit this process's
    PYTHONPATH so they import the same defectkit."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    env = {k: os.environ[k] for k in ("PYTHONPATH", "DEFECTKIT_CACHE_DIR") if k in os.environ}
    kwargs = {"runtime_env": {"env_vars": env}} if env else {}
    if address is None:
        # address="local": a new Ray of our own, even when a `ray start` cluster runs on this machine
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            **kwargs,
        )
    else:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **kwargs)
        except ConnectionError as exc:
            raise ConnectionError(
                f"--ray-address {address}: no Ray cluster reachable there ({exc}); start one "
                "with `ray start --head` (docs/scale-out.md)"
            ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def node_id(ray) -> str:
    """The Ray node this code runs on (what results.csv records in column ``node``)."""
    return str(ray.get_runtime_context().get_node_id())
