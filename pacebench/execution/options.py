"""Where and how the workers of a sweep run: the options `run`, `ablate`, `tune`, `sweep` and `worker` share.

Nothing here changes a run's key: the same plan trains the same runs on one CPU process, one process per GPU or a
Slurm job array. Plain values only (no torch), so the command line reads its defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pacebench.choices import Diagnostics
from pacebench.errors import UsageError
from pacebench.settings import WorkerSettings

EXECUTORS = ("slurm", "local")  # local: submitit's local executor (same code path, for tests and dry runs)


@dataclass(frozen=True)
class SlurmOptions:
    """A Slurm job array through submitit: `tasks` workers, each a `pacebench worker` on the shared database."""

    executor: str = "slurm"
    tasks: int = 1
    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    time_min: int = 24 * 60
    extra: dict[str, str] = field(default_factory=dict)  # --slurm-opt KEY=VALUE, passed to sbatch as --KEY=VALUE
    folder: Path = Path("results/slurm")
    force_sqlite: bool = False

    def __post_init__(self) -> None:  # refused while the command line is read, before anything is planned
        if self.tasks < 1:
            raise UsageError(f"--array must be >= 1, got {self.tasks}")


def check_counts(jobs: int, threads: int, loader_workers: int = 0) -> None:
    """Counts torch and the data loader would refuse later, with a traceback, in a worker process."""
    if jobs < 1 or threads < 1:
        raise UsageError(f"--jobs and --threads must be >= 1, got {jobs} and {threads}")
    if loader_workers < 0:
        raise UsageError(f"--workers (data-loading processes) must be >= 0, got {loader_workers}")


@dataclass(frozen=True)
class WorkerOptions:
    """Where and how the workers of a sweep run."""

    device: str = "auto"
    gpus: str | None = None  # all | 0,2,3 | N (first N); CUDA only
    jobs: int = 1  # CPU only: worker processes, each with `threads` intra-op threads
    threads: int = 1
    loader_workers: int = 4
    data_root: Path = Path("data")
    weights: Path | None = None
    weights_dir: Path | None = None
    settings: WorkerSettings = field(default_factory=WorkerSettings.from_env)
    cluster: SlurmOptions | None = None  # run the workers as a Slurm job array instead
    compile: bool = False  # torch.compile every block (same values as eager)
    diagnostics: str = Diagnostics.eval  # when runs take Fig. 2's readings (training.Environment.diagnostics)

    def __post_init__(self) -> None:
        check_counts(self.jobs, self.threads, self.loader_workers)

    def worker_args(self, device: str) -> list[str]:
        """The `pacebench worker` options that reproduce these options for one device."""
        args = [
            "--device",
            device,
            "--threads",
            str(self.threads),
            "--workers",
            str(self.loader_workers),
            "--data-root",
            str(self.data_root),
        ]
        args += ["--weights", str(self.weights)] if self.weights else []
        args += ["--weights-dir", str(self.weights_dir)] if self.weights_dir else []
        args += ["--compile"] if self.compile else []
        return [*args, "--diagnostics", str(self.diagnostics)]


def check_database(url: str, opts: SlurmOptions) -> None:
    if url.startswith("sqlite") and not opts.force_sqlite and opts.executor == "slurm":
        raise UsageError(
            "a Slurm job array needs a database every node reaches: use --db postgresql+psycopg://"
            "USER@HOST/DB (pip install 'pacebench[postgres]'); --force-sqlite if every task runs on "
            "this machine's disk"
        )
