"""A throw-away MariaDB server for tests (a real server, no mock), like ``PgCluster``.

``MariaDbServer.create()`` runs ``mariadb-install-db`` in a fresh temporary folder and
starts ``mariadbd`` on a free 127.0.0.1 port (binary log off, a small buffer pool).
MariaDB refuses to run as root, so when the tests run as root the server runs as the
``mysql`` system user that Debian's package creates (or ``nobody``). ``root`` logs in
over the server's Unix socket without a password (for the tests' own set-up); the
users the tests create log in over TCP with a password, as the server under test does.

The binaries come from Debian's ``mariadb-server`` package; ``test.sh`` installs it
when it is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.storage.pg_cluster import free_port


def mariadb_binaries() -> tuple[Path, Path, Path] | None:
    """``(mariadb-install-db, mariadbd, mariadb)``, or ``None`` when not installed."""
    found = []
    for name, places in (
        ("mariadb-install-db", ("/usr/bin", "/usr/local/bin")),
        ("mariadbd", ("/usr/sbin", "/usr/local/sbin", "/usr/bin")),
        ("mariadb", ("/usr/bin", "/usr/local/bin")),
    ):
        path = shutil.which(name) or next(
            (f"{p}/{name}" for p in places if Path(p, name).is_file()), None
        )
        if path is None:
            return None
        found.append(Path(path))
    return found[0], found[1], found[2]


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("mysql", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither 'mysql' nor 'nobody' exists")


@dataclass
class MariaDbServer:
    """One running server; ``stop()`` (or process exit) ends it and deletes its files."""

    root: Path
    port: int
    owner: pwd.struct_passwd | None
    binaries: tuple[Path, Path, Path]
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def socket(self) -> Path:
        """The Unix socket ``root`` logs in through."""
        return self.root / "sock"

    @classmethod
    def create(cls) -> MariaDbServer:
        """Install and start; raises ``RuntimeError`` with the server's log on failure."""
        binaries = mariadb_binaries()
        if binaries is None:
            raise RuntimeError("MariaDB is not installed (apt-get install mariadb-server)")
        owner = _run_as()
        root = Path(tempfile.mkdtemp(prefix="vwell-mariadb-"))
        server = cls(root, 0, owner, binaries)
        atexit.register(server.stop)
        try:
            if owner is not None:
                os.chown(root, owner.pw_uid, owner.pw_gid)
            install = [
                str(binaries[0]),
                "--no-defaults",
                f"--datadir={root / 'data'}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]
            if owner is not None:
                install.append(f"--user={owner.pw_name}")
            done = subprocess.run(install, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed: {done.stdout}{done.stderr}")
            server.start()
        except BaseException:
            server.stop()
            raise
        return server

    def start(self) -> None:
        """Start ``mariadbd`` on a free port and wait until it answers (at most 60 s)."""
        self.port = free_port()
        command = [
            str(self.binaries[1]),
            "--no-defaults",
            f"--datadir={self.root / 'data'}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.root / 'pid'}",
            f"--log-error={self.root / 'error.log'}",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=16M",
            "--skip-name-resolve",
            "--max-connections=200",
        ]
        if self.owner is not None:
            command.append(f"--user={self.owner.pw_name}")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited:\n{self._log_tail()}")
            try:
                self.sql("SELECT 1")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd did not answer:\n{self._log_tail()}") from None
                time.sleep(0.1)

    def _log_tail(self) -> str:
        log = self.root / "error.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def sql(self, statements: str) -> str:
        """Run SQL as ``root`` through the socket (the tests' set-up); its output."""
        done = subprocess.run(  # statements on stdin, so that DELIMITER works
            [str(self.binaries[2]), "--no-defaults", f"--socket={self.socket}", "-uroot",
             "--batch", "--skip-column-names"],
            input=statements, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"mariadb: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Stop the server at once (SIGKILL) and delete its files.

        A throw-away server keeps nothing, and InnoDB's clean shutdown after a session's
        tests took over 20 s, all of it at the end of the test run.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
