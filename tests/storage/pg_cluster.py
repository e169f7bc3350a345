"""A throw-away PostgreSQL cluster for tests and benchmarks (a real server, no mock).

``PgCluster.create()`` runs ``initdb`` in a fresh temporary folder and starts
``postgres`` on a free 127.0.0.1 port with durability switched off (``fsync``,
``synchronous_commit`` and ``full_page_writes`` off: a test database need not survive
a power cut, and this keeps the suite fast). PostgreSQL refuses to run as root, so
when the tests run as root the cluster belongs to the ``postgres`` system user that
Debian's package creates (or ``nobody``). The superuser ``vwell`` logs in over TCP
with a password (SCRAM), so the password path of the server is what gets exercised.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/N/bin``)
or the ``PATH``; ``test.sh`` installs the package when it is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "vwell"


def pg_bindir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``/``postgres`` (newest version), or ``None``."""

    def major(path: Path) -> int:
        name = path.parents[1].name
        return int(name) if name.isdigit() else 0

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=major)
    if found:
        return found[-1].parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists")


@dataclass
class PgCluster:
    """One running cluster; ``stop()`` (or process exit) ends it and deletes its files."""

    bindir: Path
    root: Path
    port: int
    password: str
    owner: pwd.struct_passwd | None
    running: bool = field(default=False)

    @classmethod
    def create(cls, bindir: Path | None = None) -> PgCluster:
        """initdb + start; raises ``RuntimeError`` with PostgreSQL's log if that fails."""
        bindir = bindir or pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        owner = _run_as()
        root = Path(tempfile.mkdtemp(prefix="vwell-pg-"))
        cluster = cls(bindir, root, 0, secrets.token_hex(12), owner)
        atexit.register(cluster.stop)
        try:
            pwfile = root / "pw"
            pwfile.write_text(cluster.password + "\n", encoding="utf-8")
            if owner is not None:
                os.chown(root, owner.pw_uid, owner.pw_gid)
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            cluster._run(
                "initdb",
                "-D",
                str(root / "data"),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            pwfile.unlink()
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, tool: str, *args: str) -> None:
        uid = self.owner.pw_uid if self.owner else None
        gid = self.owner.pw_gid if self.owner else None
        done = subprocess.run(
            [str(self.bindir / tool), *args],
            cwd=self.root,
            user=uid,
            group=gid,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}\n{tail}")

    def start(self) -> None:
        """Start the server (again) on a free port; waits until it accepts connections."""
        for attempt in range(3):
            self.port = self.port if (self.port and attempt == 0) else free_port()
            options = " ".join(
                (
                    f"-c port={self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={self.root}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                )
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"),
                    "-w", "-t", "30", "-o", options, "start",
                )  # fmt: skip
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            self.running = True
            return

    def stop(self, *, remove: bool = True, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: at once, unflushed commits may be lost, fine
        for a throw-away cluster; ``fast``: as an administrator would); with ``remove``
        also delete its files."""
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "stop")
            self.running = False
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, with_password: bool = False) -> str:
        """``postgresql://vwell@127.0.0.1:PORT/database`` (the password only if asked)."""
        auth = f"{SUPERUSER}:{self.password}" if with_password else SUPERUSER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"
