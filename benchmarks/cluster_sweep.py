"""A Slurm sweep on one machine: munge, slurmctld and slurmd started here, PostgreSQL on a loopback port, then 12
tiny demo runs over a 3-task job array through `pacebench run --executor slurm`; what the database says ran is
written as JSON. Run as root on a throw-away machine through `nox -s cluster` (which installs slurm-wlm and munge):
it writes a fresh /etc/munge/munge.key, and every daemon it starts is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pgserver  # noqa: E402  (the tests' throw-away PostgreSQL server)

PACEBENCH = [sys.executable, "-m", "pacebench"]  # this environment's pacebench, whatever PATH says


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/cluster.json"))
    args = parser.parse_args()
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
        subprocess.run(["sinfo"], check=True)
        pg = pgserver.start(pgserver.find_bin())
        db = pg.create_database("pacebench")
        start = time.monotonic()
        subprocess.run(
            [
                "timeout",
                "900",
                *PACEBENCH,
                "run",
                "demo",
                "--methods",
                "baseline,pace",
                "--seeds",
                "0,1,2,3,4,5",
                "--epochs",
                "2",
                "-t",
                "batch_size=16",
                "--device",
                "cpu",
                "--executor",
                "slurm",
                "--array",
                "3",
                "--partition",
                "debug",
                "--cpus-per-task",
                "1",
                "--time",
                "30",
                "--slurm-folder",
                str(work / "submitit"),
                "--db",
                db,
            ],
            check=True,
        )
        seconds = time.monotonic() - start
        subprocess.run([*PACEBENCH, "status", "--db", db], check=True)
        summary = cluster_summary(db, seconds)
        print(json.dumps(summary))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        if summary["runs"] != 12 or summary["done_once"] != 12:
            sys.exit(f"expected 12 runs each done once: {summary}")
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
    with create_engine(db).connect() as conn:
        rows = conn.execute(text("select status, attempts, worker from runs")).all()
        epochs = conn.execute(text("select count(*), count(distinct (run_id, epoch)) from epochs")).one()
        tasks = conn.execute(text("select count(*) from workers")).scalar()
    return {
        "runs": len(rows),
        "done_once": sum(r.status == "done" and r.attempts == 1 for r in rows),
        "array_tasks_seen": tasks,
        "tasks_that_trained": len({r.worker for r in rows}),
        "epoch_rows": epochs[0],
        "distinct_epoch_rows": epochs[1],
        "wall_seconds": round(seconds, 1),
    }


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


if __name__ == "__main__":
    main()
