"""nox sessions: `nox` runs the tests; `nox -s lint` runs ruff and mypy; `nox -s demo` runs the offline demo;
`nox -s cluster` (as root) runs a sweep on a one-node Slurm with PostgreSQL.

Sessions use a plain venv with pip (uv and poetry would skip the local torch wheels and download gigabytes).
"""

from __future__ import annotations

import os
import shutil

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
    """ruff (lint rules and the formatter's layout) and mypy over the package."""
    install(session)
    paths = ("pacebench", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
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

    Meant for a throw-away machine: it installs packages and writes a fresh /etc/munge/munge.key. The sweep itself
    (benchmarks/cluster_sweep.py) runs inside this session's environment, which has psycopg and SQLAlchemy."""
    if os.geteuid() != 0:
        session.error("the cluster session starts Slurm's daemons and installs packages: run it as root")
    install(session)
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "slurm-wlm", "munge", external=True)
    session.run("python", "benchmarks/cluster_sweep.py", "--out", "results/cluster.json", *session.posargs)
