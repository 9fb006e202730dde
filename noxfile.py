"""nox sessions: `nox` runs the tests; `nox -s lint` runs ruff and mypy; `nox -s demo` runs the offline demo;
`nox -s cluster` (as root) runs a sweep on a one-node Slurm with PostgreSQL.

Sessions use a plain venv with pip (uv and poetry would skip the local torch wheels and download gigabytes).
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True


def install(session: nox.Session, extras: str = "dev") -> None:
    """Installs pacebench in editable mode with the given extras."""
    session.install("-e", f".[{extras}]" if extras else ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (CPU only; a few minutes on two cores)."""
    install(session)
    session.run("python", "-m", "pytest", "--strict-markers", "--strict-config", "--durations=10", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the package."""
    install(session)
    session.run("ruff", "check", "pacebench", "tests", "noxfile.py")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """The offline demo: pre-train on digits 0-4, fine-tune baseline and PACE on digits 5-9, table and figure."""
    install(session, extras="")
    session.run("pacebench", "run", "demo", "--methods", "baseline,pace", "--seeds", "0,1,2", "--device", "cpu")
    session.run("pacebench", "report", "--table", "demo")
    session.run("pacebench", "plot", "grad-norm", "--suite", "demo", "--out", "results/demo_grad_norm.png")


@nox.session
def cluster(session: nox.Session) -> None:
    """One-node Slurm (slurm-wlm, munge) + PostgreSQL here, then 12 tiny demo runs over a 3-task job array (root).

    Meant for a throw-away machine: it installs packages and writes a fresh /etc/munge/munge.key. Every daemon it
    starts (munged, slurmctld, slurmd, the PostgreSQL postmaster) is stopped by its pid at the end."""
    import json
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    if os.geteuid() != 0:
        session.error("the cluster session starts Slurm's daemons and installs packages: run it as root")
    if not isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        install(session, "dev")
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "slurm-wlm", "munge", external=True)
    sys.path.insert(0, str(Path("tests").resolve()))
    import pgserver

    work = Path(tempfile.mkdtemp(prefix="pacebench-cluster-"))
    daemons: list[subprocess.Popen] = []
    pg = None
    try:
        key = Path("/etc/munge/munge.key")
        key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        for folder in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, "munge", "munge")
        daemons.append(subprocess.Popen(["munged", "-F", "--force"], user="munge", group="munge"))
        conf = work / "slurm.conf"
        conf.write_text(SLURM_CONF.format(work=work))
        for folder in ("state", "spool"):
            (work / folder).mkdir()
        os.environ["SLURM_CONF"] = str(conf)  # sbatch, squeue and sacct (called by submitit) read it
        time.sleep(1)
        daemons.append(subprocess.Popen(["slurmctld", "-D", "-f", str(conf)]))
        daemons.append(subprocess.Popen(["slurmd", "-D", "-N", "localhost", "-f", str(conf)]))
        for _ in range(60):
            if subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip() == "idle":
                break
            time.sleep(1)
        session.run("sinfo", external=True)
        pg = pgserver.start(pgserver.find_bin())
        db = pg.create_database("pacebench")
        start = time.monotonic()
        session.run("timeout", "900", "pacebench", "run", "demo", "--methods", "baseline,pace", "--seeds",
                    "0,1,2,3,4,5", "--epochs", "2", "-t", "batch_size=16", "--device", "cpu", "--executor", "slurm",
                    "--array", "3", "--partition", "debug", "--cpus-per-task", "1", "--time", "30",
                    "--slurm-folder", str(work / "submitit"), "--db", db, external=True)
        seconds = time.monotonic() - start
        session.run("pacebench", "status", "--db", db, external=True)
        summary = cluster_summary(db, seconds)
        session.log(json.dumps(summary))
        out = Path("results/cluster.json")
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        if summary["runs"] != 12 or summary["done_once"] != 12:
            session.error(f"expected 12 runs each done once: {summary}")
    finally:
        for daemon in reversed(daemons):  # slurmd, slurmctld, munged: by pid
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def cluster_summary(db: str, seconds: float) -> dict:
    """What the database says ran: the source of truth (Slurm's accounting is off in a one-node setup)."""
    from sqlalchemy import create_engine, text

    with create_engine(db).connect() as conn:
        rows = conn.execute(text("select status, attempts, worker from runs")).all()
        epochs = conn.execute(text("select count(*), count(distinct (run_id, epoch)) from epochs")).one()
        tasks = conn.execute(text("select count(*) from workers")).scalar()
    return {"runs": len(rows), "done_once": sum(r.status == "done" and r.attempts == 1 for r in rows),
            "array_tasks_seen": tasks, "tasks_that_trained": len({r.worker for r in rows}),
            "epoch_rows": epochs[0], "distinct_epoch_rows": epochs[1],
            "wall_seconds": round(seconds, 1)}


SLURM_CONF = """\
ClusterName=pacebench
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
