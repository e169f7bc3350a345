"""The simulated Asterisk CLI behind ``Action: Command``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vwell_pbx.simulator import gsm as gsm_cli
from vwell_pbx.simulator.gsm import SpanState
from vwell_pbx.simulator.model import Channel

VERSIONS = {
    "asterisk20": "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on "
    "2026-11-28 03:58:35 UTC",
    "yeastar": "Asterisk 1.8.20.0 built by root @ yeastar on a armv7l running Linux on "
    "2013-05-08 06:24:51 UTC",
}
CHANNEL_FORMATS = {"asterisk20": (64, 32, 7, 30), "yeastar": (20, 20, 7, 50)}


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Output lines; ``known`` is False for ``No such command`` (an AMI Error)."""

    lines: list[str]
    known: bool = True


@dataclass(slots=True, kw_only=True)
class CliState:
    """What the CLI can see of the simulator."""

    dialect: str
    gsm: bool
    channels: Callable[[], Sequence[Channel]]
    calls_processed: Callable[[], int]
    uptime: Callable[[], float]
    spans: Callable[[], Sequence[SpanState]]
    send_sms: Callable[[int, str, str], list[str]]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _core_show_channels(state: CliState, concise: bool) -> list[str]:
    channels = list(state.channels())
    if concise:
        return [
            "!".join(
                [
                    ch.name,
                    ch.context,
                    ch.exten,
                    str(ch.priority),
                    ch.state_desc,
                    ch.application,
                    ch.app_data,
                    ch.cid_num,
                    ch.account,
                    "",
                    "3",
                    "0",
                    ch.bridge.uniqueid if ch.bridge else "(None)",
                    ch.uniqueid,
                ]
            )
            for ch in channels
        ]
    widths = CHANNEL_FORMATS.get(state.dialect, CHANNEL_FORMATS["asterisk20"])

    def row(*cells: str) -> str:
        return " ".join(
            f"{cell[:width]:<{width}}" for cell, width in zip(cells, widths, strict=True)
        )

    lines = [row("Channel", "Location", "State", "Application(Data)")]
    for ch in channels:
        location = f"{ch.exten}@{ch.context}:{ch.priority}" if ch.exten else "(None)"
        lines.append(row(ch.name, location, ch.state_desc, f"{ch.application}({ch.app_data})"))
    calls = len({ch.linkedid for ch in channels})
    lines += [
        _plural(len(channels), "active channel"),
        _plural(calls, "active call"),
        f"{_plural(state.calls_processed(), 'call')} processed",
    ]
    return lines


def _no_such_command(line: str) -> CommandResult:
    words = line.split()
    best = " ".join(words[:2])
    return CommandResult(
        [f"No such command '{line}' (type 'core show help {best}' for other possible commands)"],
        known=False,
    )


def run_command(state: CliState, line: str) -> CommandResult:
    """Run one CLI line; unknown lines give Asterisk's ``No such command`` text."""
    words = line.split()
    lowered = [w.lower() for w in words]
    if lowered == ["core", "show", "version"]:
        return CommandResult([VERSIONS.get(state.dialect, VERSIONS["asterisk20"])])
    if lowered[:3] == ["core", "show", "channels"] and len(lowered) <= 4:
        concise = lowered[3:] == ["concise"]
        if len(lowered) == 4 and not concise:
            return _no_such_command(line)
        return CommandResult(_core_show_channels(state, concise))
    if lowered in (["core", "show", "uptime"], ["core", "show", "uptime", "seconds"]):
        seconds = int(state.uptime())
        return CommandResult([f"System uptime: {seconds}", f"Last reload: {seconds}"])
    if state.gsm and lowered[:1] == ["gsm"]:
        return _gsm_command(state, line, lowered)
    return _no_such_command(line)


def _gsm_command(state: CliState, line: str, lowered: list[str]) -> CommandResult:
    spans = list(state.spans())
    if lowered == ["gsm", "show", "spans"]:
        return CommandResult(gsm_cli.show_spans(spans))
    if lowered[:3] == ["gsm", "show", "span"] and len(lowered) == 4:
        try:
            number = int(lowered[3])
        except ValueError:
            return CommandResult([f"Invalid span '{lowered[3]}'"])
        span = next((s for s in spans if s.number == number), None)
        return CommandResult(gsm_cli.show_span(span, number))
    if lowered[:3] == ["gsm", "send", "sms"]:
        parsed = gsm_cli.parse_send_sms(line)
        if parsed is None or parsed.sms_id is not None:
            return CommandResult([gsm_cli.SEND_SMS_USAGE])
        return CommandResult(state.send_sms(parsed.span, parsed.number, parsed.text))
    return _no_such_command(line)
