"""Workers as a Slurm job array, through submitit (which writes the sbatch script, submits, and collects results).

Every task of the array is a `pacebench worker` on the shared database: tasks claim runs from the same queue, so the
array size is simply how many run in parallel. A preempted or resubmitted task resumes its runs from their
checkpoints in the database. submitit's folder (job scripts and logs) must be on a file system every node sees.
Slurm's own accounting is not needed: the database records what ran.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pacebench.errors import PacebenchError
from pacebench.execution.options import WorkerOptions, check_database
from pacebench.execution.worker import Worker, described, ended_badly, environment
from pacebench.store import Store


class RunsFailed(PacebenchError):
    """Raised by an array task whose worker had a run fail or was stopped, so that Slurm's accounting (sacct) shows
    the task FAILED, as `pacebench worker` exits 1. The runs' own errors are in the database."""


def task(db: str, keys: list[str], opts: WorkerOptions, wait: bool) -> dict[str, int]:
    """One array task: a worker on the device the task was given (CUDA when Slurm assigned a GPU)."""
    outcomes = Worker(Store(db), environment(opts, opts.device), opts.settings, keys).work(wait)
    if ended_badly(outcomes):
        raise RunsFailed(described(outcomes))
    return dict(outcomes)


def submit(db: str, keys: list[str], opts: WorkerOptions, wait: bool) -> None:
    """Submits `opts.cluster.tasks` workers as one job array and waits for all of them."""
    import submitit  # lazy: only a Slurm sweep needs it

    c = opts.cluster
    assert c is not None
    check_database(db, c)
    folder = Path(c.folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # submitit pickles each task's arguments here, the database URL with any password among them
    executor = submitit.AutoExecutor(folder=folder, cluster=c.executor)
    params: dict[str, Any] = dict(
        timeout_min=c.time_min,
        cpus_per_task=c.cpus_per_task,
        tasks_per_node=1,
        gpus_per_node=c.gpus_per_task,
        slurm_array_parallelism=c.tasks,
        slurm_additional_parameters=dict(c.extra),
    )
    if c.partition:
        params["slurm_partition"] = c.partition
    executor.update_parameters(**params)
    local = dataclasses.replace(opts, cluster=None)
    n = c.tasks
    try:
        jobs = executor.map_array(task, [db] * n, [keys] * n, [local] * n, [wait] * n)
    except Exception as exc:  # sbatch missing, refused or unconfigured: submitit raises its own errors for each
        reason = " ".join(str(exc).split())[-300:] or type(exc).__name__
        raise PacebenchError(
            f"Slurm did not take the job array ({reason}); check that Slurm answers here (sinfo) and the "
            "--partition / --slurm-opt values; the runs stay queued for a rerun or any pacebench worker"
        ) from None
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # a task that died (node failure, time limit): its runs stay queued or go stale
            if RunsFailed.__name__ in str(exc):  # submitit hands back the task's traceback as text only
                continue  # the task ran to its end; the sweep reports its failed runs from the database
            raise PacebenchError(
                f"Slurm task {job.job_id} failed: {str(exc).strip().splitlines()[-1]}; its "
                f"log is under {c.folder}; rerun to continue the unfinished runs"
            ) from None
