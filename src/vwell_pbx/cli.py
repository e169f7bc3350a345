"""The ``vwell-pbx`` command: run the server, run the simulator, manage users and the database.

::

    vwell-pbx serve [--config PATH]
    vwell-pbx simulate [ARGS...]                 (arguments go to the simulator)
    vwell-pbx user add LOGIN LOGIN2 (--password PW | --password-sha1 HEX)
                       [--role ROLE] [--extension EXT]... [--config PATH]
    vwell-pbx user list [--json] [--config PATH]
    vwell-pbx user remove LOGIN LOGIN2 [--config PATH]
    vwell-pbx user passwd LOGIN LOGIN2 (--password PW | --password-sha1 HEX) [--config PATH]
    vwell-pbx db status [--config PATH]
    vwell-pbx db upgrade [--config PATH]
    vwell-pbx db copy --to URL [--force] [--config PATH]

``--password -`` (or ``--password-sha1 -``) reads the value from the first line of
standard input, which keeps it out of the shell history and the process list.

Users live in the configuration's storage (``[storage] url``, SQLite or PostgreSQL);
without a configuration file (demo mode) it is ``data/vwell.sqlite3`` under the
working directory, as the demo server uses. With ``[users] backend = "sql"`` they are
another application's and the ``user`` commands refuse (exit code 1).
``db copy --to URL`` copies every table into another database (typically a new
PostgreSQL one); its password comes from the URL or ``VWELL_PBX_STORAGE_PASSWORD``.
Exit codes: 0 success, 1 error (the message says what), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from vwell_pbx import __version__
from vwell_pbx.api.roles import RoleBook, UnknownRoleError
from vwell_pbx.config import (
    STORAGE_PASSWORD_ENV,
    AppConfig,
    demo_config,
    find_config_path,
    load_config,
)
from vwell_pbx.errors import VwellError
from vwell_pbx.storage import (
    StorageSettings,
    StorageUrl,
    open_database,
    open_storage,
    schema_status,
    upgrade,
)
from vwell_pbx.storage.copy import copy_database, row_counts
from vwell_pbx.users import UserDirectory, normalize_sha1, sha1_of_password
from vwell_pbx.web.server import role_specs

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

#: The demo database, relative to the working directory (what demo mode uses).
DEMO_DATA_DIR = Path("data")


class _UsageError(Exception):
    """Bad command-line usage found after parsing (exit code 2)."""


def _add_config(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: the option may be given before or after the sub-command without the
    # sub-parser's default overwriting a value given earlier.
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: $VWELL_PBX_CONFIG, else ./config/app-config.toml, "
        "else demo mode)",
    )


def _add_secret(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--password", metavar="PW", help="the password ('-' reads it from stdin)")
    group.add_argument(
        "--password-sha1",
        metavar="HEX",
        help="the password's hex SHA-1, e.g. to import an existing user ('-' reads stdin)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vwell-pbx",
        description="JSON API server (HTTP and WebSocket) in front of an Asterisk PBX's AMI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_config(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    _add_config(serve)

    commands.add_parser(
        "simulate",
        help="run the AMI PBX simulator (see: vwell-pbx simulate --help)",
        add_help=False,
    )

    user = commands.add_parser("user", help="manage the user directory")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = user_commands.add_parser("add", help="add a user")
    add.add_argument("login", metavar="LOGIN", help="the account, e.g. Agent")
    add.add_argument("login2", metavar="LOGIN2", help="the person, e.g. 'Иванов И.И.'")
    _add_secret(add)
    add.add_argument("--role", default="operator", help="the user's role (default: operator)")
    add.add_argument(
        "--extension",
        action="append",
        default=[],
        metavar="EXT",
        help="an extension the user owns (repeatable)",
    )
    _add_config(add)

    lst = user_commands.add_parser("list", help="list users (never their hashes)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_config(lst)

    remove = user_commands.add_parser("remove", help="remove a user")
    remove.add_argument("login", metavar="LOGIN")
    remove.add_argument("login2", metavar="LOGIN2")
    _add_config(remove)

    passwd = user_commands.add_parser("passwd", help="change a user's password")
    passwd.add_argument("login", metavar="LOGIN")
    passwd.add_argument("login2", metavar="LOGIN2")
    _add_secret(passwd)
    _add_config(passwd)

    db = commands.add_parser("db", help="the database: status, schema upgrade, copy")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    status = db_commands.add_parser("status", help="where the database is, its schema, rows")
    _add_config(status)
    upgrade_cmd = db_commands.add_parser("upgrade", help="apply pending schema migrations")
    _add_config(upgrade_cmd)
    copy = db_commands.add_parser(
        "copy", help="copy every table into another database (e.g. SQLite -> PostgreSQL)"
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the target: postgresql://USER@HOST:PORT/DB (password from the URL or "
        f"${STORAGE_PASSWORD_ENV}) or sqlite:PATH",
    )
    copy.add_argument(
        "--force", action="store_true", help="replace the target's rows if it has any"
    )
    _add_config(copy)
    return parser


def _load(config_arg: str | None, err: TextIO) -> AppConfig:
    path = find_config_path(config_arg)
    if path is None:
        config = demo_config(DEMO_DATA_DIR)
        print(
            "no configuration file (--config, VWELL_PBX_CONFIG or ./config/app-config.toml): "
            f"using the demo database {config.storage.resolved_url}",
            file=err,
        )
        return config
    return load_config(path)


def _sha1_from_args(args: argparse.Namespace, stdin: TextIO) -> str:
    def value(raw: str) -> str:
        if raw != "-":
            return raw
        if stdin.isatty():  # typed by a person: do not echo it
            return getpass.getpass("Password: " if args.password is not None else "SHA-1: ")
        line = stdin.readline()
        if not line:
            raise _UsageError("standard input is empty; expected the password on one line")
        return line.rstrip("\r\n")

    if args.password is not None:
        password = value(args.password)
        if not password:
            raise _UsageError("the password must not be empty")
        return sha1_of_password(password)
    sha1 = normalize_sha1(value(args.password_sha1))
    if sha1 is None:
        raise _UsageError("--password-sha1 must be 40 hexadecimal digits")
    return sha1


def _user_command(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    config = _load(getattr(args, "config", None), err)
    if config.users.backend == "sql":
        print(
            f"error: users are read from another application's database "
            f'({config.users.directory_dsn()}, [users] backend = "sql"); add, change and '
            "remove them there: `vwell-pbx user` manages local users only",
            file=err,
        )
        return EXIT_ERROR
    roles = RoleBook(role_specs(config.roles))
    if args.user_command == "add" and args.role not in roles:
        raise UnknownRoleError(
            f"unknown role {args.role!r}; known roles: {', '.join(roles.names())}"
        )
    sha1 = _sha1_from_args(args, stdin) if args.user_command in ("add", "passwd") else ""
    return asyncio.run(_user_action(args, config=config, roles=roles, sha1=sha1, out=out, err=err))


async def _user_action(
    args: argparse.Namespace,
    *,
    config: AppConfig,
    roles: RoleBook,
    sha1: str,
    out: TextIO,
    err: TextIO,
) -> int:
    async with open_storage(config.storage.resolved_url, config.storage.settings()) as storage:
        directory = UserDirectory(storage.users)
        if args.user_command == "add":
            record = await directory.add(
                args.login, args.login2, sha1_hex=sha1, role=args.role, extensions=args.extension
            )
            exts = f", extensions {', '.join(record.extensions)}" if record.extensions else ""
            print(f"added {record.login} / {record.login2} (role {record.role}{exts})", file=out)
        elif args.user_command == "passwd":
            await directory.set_sha1(args.login, args.login2, sha1_hex=sha1)
            print(f"password changed for {args.login} / {args.login2}", file=out)
        elif args.user_command == "remove":
            if not await directory.remove(args.login, args.login2):
                print(f"error: no user {args.login!r} / {args.login2!r}", file=err)
                return EXIT_ERROR
            print(f"removed {args.login} / {args.login2}", file=out)
        else:  # list
            await _print_users(directory, roles, json_lines=args.json, out=out, err=err)
    return EXIT_OK


async def _print_users(
    directory: UserDirectory, roles: RoleBook, *, json_lines: bool, out: TextIO, err: TextIO
) -> None:
    records = await directory.list()
    if json_lines:
        for r in records:
            obj = {
                "login": r.login,
                "login2": r.login2,
                "role": r.role,
                "extensions": list(r.extensions),
                "created": r.created,
                "updated": r.updated,
            }
            print(json.dumps(obj, ensure_ascii=False), file=out)
    elif not records:
        print(f"no users in {directory.location}", file=out)
    else:
        header = ("LOGIN", "LOGIN2", "ROLE", "EXTENSIONS", "UPDATED")
        rows = [
            (r.login, r.login2, r.role, ",".join(r.extensions) or "-", r.updated) for r in records
        ]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            print(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out
            )
    for name in roles.unknown(r.role for r in records):
        print(f"warning: role {name!r} is not defined; its users cannot log in", file=err)


def _db_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _load(getattr(args, "config", None), err)
    url = config.storage.resolved_url
    settings = config.storage.settings()
    if args.db_command == "status":
        return asyncio.run(_db_status(url, settings, out, err))
    if args.db_command == "upgrade":
        return asyncio.run(_db_upgrade(url, settings, out))
    target = StorageUrl.parse(args.to, base_dir=Path.cwd())
    if target.password is None:
        target = target.with_password(os.environ.get(STORAGE_PASSWORD_ENV))
    if target == url:
        raise _UsageError("--to names the configured database itself")
    return asyncio.run(_db_copy(url, target, settings, force=args.force, out=out))


async def _db_status(url: StorageUrl, settings: StorageSettings, out: TextIO, err: TextIO) -> int:
    db = await open_database(url, settings)
    try:
        status = await schema_status(db)
        counts = await row_counts(db) if not status.too_new else {}
    finally:
        await db.aclose()
    print(f"storage  {url}", file=out)
    if status.too_new:
        print(
            f"schema   version {status.current}, newer than this program's {status.latest}: "
            "upgrade vwell-pbx-srv",
            file=out,
        )
        return EXIT_ERROR
    pending = ", ".join(f"{m.version} {m.name}" for m in status.pending)
    state = f"pending: {pending} (run `vwell-pbx db upgrade`)" if pending else "up to date"
    print(f"schema   version {status.current} of {status.latest}, {state}", file=out)
    tables = ", ".join(f"{table} {n}" for table, n in counts.items()) or "(none yet)"
    print(f"rows     {tables}", file=out)
    return EXIT_OK


async def _db_upgrade(url: StorageUrl, settings: StorageSettings, out: TextIO) -> int:
    db = await open_database(url, settings)
    try:
        before = (await schema_status(db)).current
        applied = await upgrade(db)
    finally:
        await db.aclose()
    if applied:
        names = ", ".join(f"{m.version} {m.name}" for m in applied)
        print(f"{url}: schema upgraded from version {before} to {applied[-1].version} ({names})",
              file=out)  # fmt: skip
    else:
        print(f"{url}: schema already at version {before}", file=out)
    return EXIT_OK


async def _db_copy(
    source_url: StorageUrl,
    target_url: StorageUrl,
    settings: StorageSettings,
    *,
    force: bool,
    out: TextIO,
) -> int:
    source = await open_database(source_url, settings)
    try:
        target = await open_database(target_url, settings)
        try:
            report = await copy_database(source, target, force=force)
        finally:
            await target.aclose()
    finally:
        await source.aclose()
    rows = ", ".join(f"{table} {n}" for table, n in report.rows.items())
    print(f"copied {source_url} -> {target_url}: {rows}", file=out)
    return EXIT_OK


def _run(module: str, argument: object, what: str) -> int:
    """Call ``module.run(argument)``; the module is imported only now.

    Lazily, so that the ``user`` commands neither pay for nor depend on the server's
    and the simulator's imports.
    """
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise VwellError(f"{what} is not available in this installation ({module})") from exc
        raise
    return int(mod.run(argument))


def _simulator_args(args_list: Sequence[str]) -> list[str] | None:
    """What follows ``simulate`` if that is the command, else ``None``.

    ``simulate`` hands all its arguments to the simulator's own parser untouched. Only
    the global ``--config`` may come before it (the simulator reads no configuration).
    """
    index = 0
    while index < len(args_list):
        word = args_list[index]
        if word == "simulate":
            return list(args_list[index + 1 :])
        if word == "--config":
            index += 2
        elif word.startswith("--config="):
            index += 1
        else:
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vwell-pbx``; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    rest = _simulator_args(args_list)
    if rest is not None:
        try:
            return _run("vwell_pbx.simulator.cli", rest, "the simulator")
        except VwellError as exc:
            print(f"error: {exc}", file=err)
            return EXIT_ERROR
        except SystemExit as exc:  # the simulator's own argparse: --help or bad usage
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    parser = _build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    if args.command == "simulate":  # after an abbreviated --config (--conf X simulate)
        return main(["simulate"])
    try:
        if args.command == "serve":
            path = find_config_path(getattr(args, "config", None))
            return _run("vwell_pbx.web.server", path, "the server")
        if args.command == "db":
            return _db_command(args, out, err)
        return _user_command(args, out, err, sys.stdin)
    except _UsageError as exc:
        print(f"usage error: {exc}", file=err)
        return EXIT_USAGE
    except VwellError as exc:  # ConfigError, user directory, role and storage errors
        print(f"error: {exc}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
