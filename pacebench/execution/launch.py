"""Starting workers: one in this process, one `pacebench worker` process per device, or a Slurm job array."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

from pacebench.execution.cluster import submit
from pacebench.execution.devices import worker_devices
from pacebench.execution.options import WorkerOptions
from pacebench.execution.signals import stop_on_signals
from pacebench.execution.worker import Worker, environment
from pacebench.settings import DB_ENV, results_dir
from pacebench.store import Storage


def run_workers(store: Storage, keys: list[str], opts: WorkerOptions, wait: bool) -> None:
    """Trains the runs of `keys` with the workers `opts` asks for, until none is left (or held elsewhere)."""
    if opts.cluster is not None:
        submit(store.url, keys, opts, wait)
        return
    devices = worker_devices(opts.device, opts.gpus, opts.jobs, opts.threads)
    if len(devices) == 1:
        Worker(store, environment(opts, devices[0]), opts.settings, keys).work(wait)
    else:
        run_processes(store.url, keys, opts, devices, wait)


def run_processes(db: str, keys: list[str], opts: WorkerOptions, devices: list[str], wait: bool) -> None:
    """One `pacebench worker` process per device, each in its own session (a terminal's Ctrl-C reaches only this
    process, which forwards one SIGTERM to each worker so that they checkpoint and release their runs). The
    database URL goes through the environment (PACEBENCH_DB), never the command line: any local user reads a
    command line (`ps`), only the owner a process's environment. So do the worker settings (`run
    --checkpoint-every`, `--attempts`), which `pacebench worker` reads from there."""
    logs = results_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=logs, delete=False) as f:
        json.dump(keys, f)
    procs = []
    try:
        for i, device in enumerate(devices):
            command = [
                sys.executable,
                "-m",
                "pacebench",
                "worker",
                "--keys-file",
                f.name,
                *opts.worker_args(device),
                *(["--wait"] if wait else []),
            ]
            log = open(logs / f"worker-{i}.log", "w")  # noqa: SIM115 (closed with the process below)
            procs.append(
                (
                    subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        env={**os.environ, DB_ENV: db, **opts.settings.as_env()},
                    ),
                    log,
                )
            )
        stop = threading.Event()
        with stop_on_signals(stop):
            while any(p.poll() is None for p, _ in procs):
                if stop.wait(0.5):
                    for p, _ in procs:
                        if p.poll() is None:
                            p.send_signal(signal.SIGTERM)
                    for p, _ in procs:
                        p.wait()
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
        os.unlink(f.name)
