"""Helpers shared by the benchmarks: process stats from /proc, percentiles, tables,
child processes that announce their ports as one JSON line, CPU pinning."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Where the children import vwell_pbx from: ``snapshot_source()`` points it at a copy
#: taken when the run starts, so that files edited during a run cannot change (or
#: break) what is measured half-way through.
SOURCE = [ROOT / "src"]
#: Other sources a variant may run (``--compare-src``), by name.
OTHER_SOURCES: dict[str, Path] = {}
#: Children's stderr (the server's own log: slow clients dropped, ...) goes here.
CHILD_LOG = ROOT / "bench" / "results" / "children.log"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name and clock (``/proc/cpuinfo``): absolute figures compare only
    on the same kind of machine (the ratios against a baseline do across machines)."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    model = info.get("model name") or platform.processor() or "unknown CPU"
    mhz = info.get("cpu MHz")
    return f"{model} at {float(mhz):,.0f} MHz" if mhz else model


# The server (and every baseline standing in for it) runs on one core, the load
# generator (feeder + clients) on the other, when the machine has two or more.
SERVER_CPU = 1 if CORES >= 2 else 0
LOAD_CPU = 0


#: Bench accounts: (login, login2, password, role). Every bench connection logs in as
#: one of them (the per-user request rate limit is raised for the benchmarks).
USERS = (
    ("op", "Operator", "op-pw", "operator"),
    ("sup", "Supervisor", "sup-pw", "supervisor"),
)


def credentials(login: str) -> dict[str, str]:
    """The credential fields (login, login2, hex SHA-1 of the password) of ``login``."""
    for user, login2, password, _role in USERS:
        if user == login:
            sha1 = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest()
            return {"login": user, "login2": login2, "sha1": sha1}
    raise KeyError(login)


def snapshot_source(folder: Path, source: Path | None = None, *, name: str | None = None) -> Path:
    """Copy ``source``/vwell_pbx (default: this checkout's src) into ``folder`` and make
    the children import it from there; with ``name``, only children started with
    ``src=name`` do (``--compare-src``)."""
    import shutil  # noqa: PLC0415

    target = folder / "src"
    shutil.copytree(
        (source or ROOT / "src") / "vwell_pbx",
        target / "vwell_pbx",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    if name is None:
        SOURCE[0] = target
    else:
        OTHER_SOURCES[name] = target
    return target


def child_env(src: str | None = None) -> dict[str, str]:
    """The environment of a child process: bench and the (snapshot of) vwell_pbx, or
    the other source ``src`` names."""
    env = dict(os.environ)
    source = SOURCE[0] if src is None else OTHER_SOURCES[src]
    env["PYTHONPATH"] = os.pathsep.join((str(ROOT), str(source)))
    return env


def pin_self(cpu: int) -> None:
    """Pin this process to one CPU (ignored where affinity cannot be set)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one; returns the new soft limit."""
    import resource  # noqa: PLC0415  (POSIX only)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (from /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass(slots=True)
class CpuMeter:
    """CPU used by a process between ``start()`` and ``stop()``, as % of one core."""

    pid: int
    _cpu0: float = 0.0
    _t0: float = 0.0

    def start(self) -> None:
        """Begin a measurement."""
        self._cpu0 = cpu_seconds(self.pid)
        self._t0 = time.perf_counter()

    def percent(self) -> float:
        """Percent of one core used since ``start()``."""
        elapsed = time.perf_counter() - self._t0
        return 100.0 * self.seconds() / elapsed if elapsed > 0 else 0.0

    def seconds(self) -> float:
        """CPU seconds used since ``start()``."""
        return cpu_seconds(self.pid) - self._cpu0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values (nearest rank); nan if empty."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def fmt(value: object) -> str:
    """A table cell."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _fmt_float(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _fmt_float(value: float) -> str:
    """A float cell: fewer decimals the bigger it is, ``-`` for nan."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    """Print rows (dicts with the same keys) as a Markdown table under ``title``."""
    print(f"\n### {title}\n", flush=True)
    if not rows:
        print("(no rows)")
        return
    keys = list(rows[0])
    cells = [[fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("| " + " | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


class Child:
    """A benchmark child process (python -m bench.X ...) that prints one JSON line
    with what it listens on once it is ready, then runs until terminated."""

    def __init__(
        self, proc: subprocess.Popen[bytes], info: dict[str, Any], started: float, ready: float
    ) -> None:
        self.proc = proc
        self.info = info
        self.pid = proc.pid
        #: Seconds from spawning the process to its ready line.
        self.startup = ready - started

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


async def spawn(
    module: str, args: dict[str, Any], *, cpu: int = SERVER_CPU, within: float = 30.0
) -> Child:
    """Start ``python -m module 'JSON args'`` pinned to ``cpu``; wait for its JSON line.

    ``args["src"]``, when given, names the source it imports (``child_env``)."""
    env = child_env(args.get("src"))
    started = time.perf_counter()
    CHILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with CHILD_LOG.open("ab") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220  (one spawn; the wait below has a timeout)
            ["taskset", "-c", str(cpu), sys.executable, "-m", module, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
            env=env,
        )
    assert proc.stdout is not None
    stdout = proc.stdout
    try:
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), within)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"{module} did not become ready within {within}s") from None
    ready = time.perf_counter()
    if not line:
        proc.wait(5)
        raise RuntimeError(f"{module} exited with {proc.returncode} before it was ready")
    return Child(proc, json.loads(line), started, ready)


@contextlib.asynccontextmanager
async def child(
    module: str, args: dict[str, Any], *, cpu: int = SERVER_CPU, within: float = 30.0
) -> AsyncIterator[Child]:
    """``spawn`` for the duration of an ``async with`` block."""
    proc = await spawn(module, args, cpu=cpu, within=within)
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


def announce(info: dict[str, Any]) -> None:
    """A child's ready line: one JSON object on stdout."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
