"""A throw-away PostgreSQL server in a temp folder on a loopback port (standard library only, so that the nox
`cluster` session can use it too).

initdb refuses to run as root, so as root the server runs as an unprivileged user (`postgres` if it exists, else
`nobody`) through `runuser`; as any other user it runs as that user. Stopped by its postmaster's pid. Tests of
outages stop it and start it again on the same port and data (`pause`, `resume`, `restart`) and drop every client
connection (`terminate_connections`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def find_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: $PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    which = shutil.which("initdb")
    candidates += [str(Path(which).parent)] if which else []
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    folder: Path
    port: int
    pid: int
    bin_dir: Path
    prefix: list[str]  # runs pg_ctl as the server's user

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
            check=True,
            capture_output=True,
            cwd=self.folder,
        )

    def pause(self) -> None:
        """Fast shutdown, data kept: every client connection is dropped and new ones are refused until `resume`."""
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")

    def resume(self) -> None:
        """Starts the server again on the same port and data; returns once it accepts connections."""
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.folder / "log"), "-o", _options(self.port, self.folder))
        self.pid = int((self.folder / "data" / "postmaster.pid").read_text().splitlines()[0])

    def restart(self) -> None:
        self.pause()
        self.resume()

    def terminate_connections(self) -> int:
        """Drops every other client connection, as an administrator or a proxy failover would; how many."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> "
                "pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchall()
        return len(rows)

    def stop(self) -> None:
        """Fast shutdown by pid (SIGINT to the postmaster), then remove the folder."""
        try:
            os.kill(self.pid, signal.SIGINT)
            for _ in range(200):
                os.kill(self.pid, 0)
                time.sleep(0.05)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def start(bin_dir: Path) -> PgServer:
    """initdb + start on a free loopback port; returns once the server accepts connections."""
    folder = Path(tempfile.mkdtemp(prefix="pacebench-pg-"))
    data = folder / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
        if user is None:
            raise RuntimeError("running as root and neither a postgres nor a nobody user exists for initdb")
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    port = _free_port()
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        cwd=folder,
    )
    server = PgServer(folder, port, 0, bin_dir, prefix)
    server.resume()
    return server


def _options(port: int, folder: Path) -> str:
    return f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
