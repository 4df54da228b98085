"""A benchmark grid on Ray: every (method, variant, category, seed) one task with stated CPUs.

Ray does the scheduling; this module only submits the grid's runs and hands each row to
the caller as its task finishes (the caller appends it to results.csv at once). A task
runs the same :func:`~defectkit.engine.benchmark.execute_run` as the local engine, with
torch's threads set to the task's CPUs, and records the Ray node it ran on. A task that
raises is a failed row (execute_run catches it); a task whose worker died (out of memory,
node lost) is retried once by Ray, then recorded as failed too, so the grid always goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from ..utils.progress import progress as progress_bar
from .ray_cluster import node_id, ray_session

#: Times Ray re-runs a task whose worker process died (not one that raised).
WORKER_RETRIES = 1


def _grid_task(run, shared: Mapping[str, Any], out: Optional[str], threads: int) -> Dict[str, Any]:
    """Body of one Ray task: the run's row, recording which node ran it."""
    import ray

    from .benchmark import execute_run

    return execute_run(
        run, shared, None if out is None else Path(out), threads=threads, progress=False, node=node_id(ray)
    )


def run_on_ray(
    runs: Sequence,
    shared: Mapping[str, Any],
    out: Optional[Path],
    on_row: Callable[[Dict[str, Any]], None],
    address: Optional[str] = None,
    cpus_per_run: int = 1,
    progress: bool = True,
) -> None:
    """Run ``runs`` (PlannedRun) as Ray tasks of ``cpus_per_run`` CPUs; ``on_row(row)`` as each finishes."""
    from .benchmark import failed_row

    if not runs:
        return
    with ray_session(address) as ray:
        task = ray.remote(num_cpus=cpus_per_run, max_retries=WORKER_RETRIES)(_grid_task)
        pending = {task.remote(run, dict(shared), None if out is None else str(out), cpus_per_run): run for run in runs}
        with progress_bar(total=len(pending), desc="benchmark (ray)", unit="run", enabled=progress, leave=True) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        row = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - the worker died; record it, go on
                        row = failed_row(run, shared, {}, exc)
                        row.update(weights="" if shared["weights"] is None else str(shared["weights"]), node="")
                    bar.set_postfix_str(f"{run.variant} {run.category} seed {run.seed}")
                    bar.update(1)
                    on_row(row)
