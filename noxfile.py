"""nox sessions: `nox` runs the tests; `nox -s lint` runs ruff and mypy; `nox -s demo` runs the offline demo.

Sessions use a plain venv with pip (uv and poetry would skip the local torch wheels and download gigabytes).
"""

from __future__ import annotations

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
