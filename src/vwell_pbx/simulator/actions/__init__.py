"""The simulator's AMI actions: one small coroutine per action, and the table of them.

``ACTIONS`` maps a lower-cased action name to its handler; the connection layer
(``simulator.server``) looks each action up there once the client is logged in (before,
only ``PRE_LOGIN`` actions are served, as Asterisk does). What a handler may use of its
connection is ``base.ActionSession``. The handlers are grouped as the PBX's parts are:

- ``session``: Login, Challenge, Logoff, Ping, Events
- ``channels``: CoreShowChannels, Status, Getvar, Setvar, Hangup, Redirect, Atxfer
- ``originate``: Originate (sync and async)
- ``sms``: smscommand (TG gateways), DongleSendSMS (chan_dongle)
- ``system``: Command (the CLI), CoreStatus, CoreSettings, UserEvent, ListCommands

To add an action: write its handler in the module it belongs to, add it here, and add
its line to ``system.COMMAND_HELP`` so that ListCommands shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from vwell_pbx.simulator.actions import channels, originate, session, sms, system
from vwell_pbx.simulator.actions.base import ActionSession, Handler, SessionEnd, response

ACTIONS: Final[Mapping[str, Handler]] = MappingProxyType(
    {
        "login": session.login,
        "challenge": session.challenge,
        "logoff": session.logoff,
        "ping": session.ping,
        "events": session.events,
        "coreshowchannels": channels.core_show_channels,
        "status": channels.status,
        "getvar": channels.getvar,
        "setvar": channels.setvar,
        "hangup": channels.hangup,
        "redirect": channels.redirect,
        "atxfer": channels.atxfer,
        "originate": originate.originate,
        "command": system.command,
        "smscommand": sms.smscommand,
        "donglesendsms": sms.dongle_send_sms,
        "corestatus": system.core_status,
        "coresettings": system.core_settings,
        "userevent": system.user_event,
        "listcommands": system.list_commands,
    }
)
"""Lower-cased action name -> handler."""

PRE_LOGIN: Final = frozenset({"login", "challenge", "logoff"})
"""The actions served before login; every other one gets ``Permission denied``."""

__all__ = ["ACTIONS", "PRE_LOGIN", "ActionSession", "Handler", "SessionEnd", "response"]
