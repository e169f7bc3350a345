"""The data behind roles: which AMI actions, functions and events are sensitive, which
headers name a channel, and the built-in roles, as plain values.

The rule engine that applies these tables is ``vwell_pbx.api.roles``; this module has no
logic, so a reviewer can read what is allowed without reading how. Names are matched
case-insensitively everywhere (AMI is), so the sets hold case-folded names.

``RoleSpec`` and ``EventRuleSpec`` are what a role is made of: ``RoleBook`` takes a
mapping of them (the server converts the configuration's ``[roles.NAME]`` tables into
them where it is assembled), and the built-in roles are written with them below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BUILTIN_ROLE_SPECS",
    "CHANNEL_HEADERS",
    "DANGEROUS_ACTIONS",
    "DANGEROUS_FUNCTIONS",
    "DEVICE_CHANNEL_ACTIONS",
    "SECURITY_EVENTS",
    "SESSION_ACTIONS",
    "SHELL_APPLICATIONS",
    "EventRuleSpec",
    "RoleSpec",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRuleSpec:
    """One event rule: a name pattern and optional field patterns (see ``EventRule``).

    ``fields`` maps a header name to a case-insensitive ``fnmatch`` pattern, or a list
    of them (any may match); ``{extension}`` stands for each of the user's extensions.
    """

    name: str = "*"
    fields: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleSpec:
    """What a role grants, as written by an administrator (or below, for built-ins).

    ``methods`` are API method names (``"*"`` = all); ``actions`` AMI action patterns
    and danger keys for ``send``; ``events`` event rules (a bare name pattern or an
    ``EventRuleSpec``); ``own_extensions_only`` binds ``dial``, ``redirect`` and channel
    headers in ``send`` to the user's extensions (and implies ``own_calls_only``);
    ``own_calls_only`` shows the user only calls (``call.*`` events, ``calls``,
    ``callHistory``) that involved one of their extensions (``None``: as the role it
    extends, else no); ``admin`` grants everything but the
    session actions; ``extends`` names a role whose lists this one starts from (its own
    name: the built-in of that name). SMS: a user always sees the SMS they sent;
    ``sms_spans`` adds the incoming SMS of those spans or devices (``"*"``: all), and
    ``sms_all`` every SMS, in and out (``None``: as the role it extends, else no).
    """

    methods: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    events: tuple[str | EventRuleSpec, ...] = ()
    own_extensions_only: bool = False
    own_calls_only: bool | None = None
    admin: bool = False
    extends: str | None = None
    sms_spans: tuple[str, ...] = ()
    sms_all: bool | None = None


# --- sensitive actions -----------------------------------------------------------------

#: Actions that can run shell commands, read or rewrite the PBX's files or configuration,
#: load code or restart it: granted only by ``admin`` or by naming them literally.
DANGEROUS_ACTIONS = frozenset(
    name.casefold()
    for name in (
        # run shell commands / CLI
        "Command",
        "AGI",
        "MixMonitor",  # its Command option runs a shell command after recording
        "Monitor",
        "ChangeMonitor",
        # read or rewrite configuration and files
        "GetConfig",
        "GetConfigJSON",
        "UpdateConfig",
        "CreateConfig",
        "ListCategories",
        "ShowDialPlan",
        # load code, restart
        "ModuleLoad",
        "ModuleUnload",
        "Reload",
        "Restart",
        "CoreRestart",
        "DAHDIRestart",
        "LoggerRotate",
        # the Asterisk database (call forwarding, blacklists ...)
        "DBPut",
        "DBDel",
        "DBDelTree",
        "DBGet",
        "DBGetTree",
        # messages that leave the PBX under its name
        "JabberSend",
        "MessageSend",
        "SendFax",
    )
)

#: Actions that would change the server's own shared AMI session: refused for everyone.
SESSION_ACTIONS = frozenset(
    name.casefold()
    for name in ("Login", "Logoff", "Challenge", "Events", "Filter", "WaitEvent", "UserLogoff")
)

#: Dialplan applications that run programs; ``Originate`` with one of them is dangerous.
SHELL_APPLICATIONS = {
    name.casefold(): name
    for name in (
        "System",
        "TrySystem",
        "Exec",
        "TryExec",
        "ExecIf",
        "ExecIfTime",
        "AGI",
        "EAGI",
        "DeadAGI",
        "AsyncAGI",
    )
}

#: Dialplan functions that run programs, touch files, the environment or databases. A
#: Getvar/Setvar/Originate value that calls one would execute it on the PBX
#: (``Getvar Variable: SHELL(id)`` is the classic), whatever action carries it. Names
#: starting with ``ODBC_`` or ``SQL_`` (per-site functions) count too.
DANGEROUS_FUNCTIONS = (
    "SHELL",
    "SYSTEM",
    "TRYSYSTEM",
    "EVAL",
    "EVAL_EXTEN",
    "FILE",
    "FILE_COUNT_LINE",
    "FILE_FORMAT",
    "STAT",
    "ENV",
    "CURL",
    "CURLOPT",
    "DB",
    "DB_DELETE",
    "DB_KEYS",
    "DB_EXISTS",
    "ODBC",
    "REALTIME",
    "REALTIME_STORE",
    "REALTIME_DESTROY",
    "REALTIME_FIELD",
    "REALTIME_HASH",
    "AST_CONFIG",
    "SPOOL",
)
#: Security events (as well as any event whose ``Privilege`` names ``security``): they
#: reach only an admin role or one that names them literally.
SECURITY_EVENTS = frozenset(
    name.casefold()
    for name in (
        "FailedACL",
        "InvalidAccountID",
        "SessionLimit",
        "MemoryLimit",
        "LoadAverageLimit",
        "RequestNotSupported",
        "RequestNotAllowed",
        "AuthMethodNotAllowed",
        "RequestBadFormat",
        "SuccessfulAuth",
        "UnexpectedAddress",
        "ChallengeResponseFailed",
        "InvalidPassword",
        "ChallengeSent",
        "InvalidTransport",
    )
)


# --- headers that name a channel (ownership) -------------------------------------------

#: Headers (case-folded) whose value names a *live* channel, in the AMI actions of
#: Asterisk 1.8 to 20: ``Channel`` (Hangup, Redirect, Atxfer, BlindTransfer,
#: CancelAtxfer, Getvar, Setvar, Status, PlayDTMF, PlayMF, SendText, Park, BridgeKick,
#: MuteAudio, LocalOptimizeAway, AOCMessage, ConfbridgeKick/Mute/Unmute, the Monitor
#: and MixMonitor family, ...), ``ExtraChannel`` (Redirect), ``Channel1`` and
#: ``Channel2`` (Bridge), ``TimeoutChannel`` and ``AnnounceChannel`` (Park). For a role
#: with ``own_extensions_only`` every such value must be a channel of a live call that
#: involves one of the user's extensions (``pbx.channels.ChannelRegistry``).
CHANNEL_HEADERS = frozenset(
    ("channel", "extrachannel", "channel1", "channel2", "timeoutchannel", "announcechannel")
)

#: Actions whose ``Channel`` is not a live channel but the dial string of a new one
#: (``SIP/269``, ``Local/269@ctx``): with ``own_extensions_only`` it must be a device of
#: one of the user's own extensions, as ``dial``'s ``from`` must.
DEVICE_CHANNEL_ACTIONS = frozenset(("originate",))


# --- built-in roles --------------------------------------------------------------------

_OPERATOR_METHODS = (
    "send",
    "dial",
    "redirect",
    "gsmSendSMS",
    "smsStatus",
    "smsHistory",
    "onEvent",
    "onceEvent",
    "rmEvent",
    "calls",
    "callHistory",
)

_READ_ONLY_ACTIONS = (
    "Ping",
    "CoreShowChannels",
    "CoreStatus",
    "CoreSettings",
    "Status",
    "SIPpeers",
    "SIPshowpeer",
    "SIPshowregistry",
    "SIPqualifypeer",
    "PJSIPShowEndpoints",
    "PJSIPShowEndpoint",
    "PJSIPShowContacts",
    "PJSIPShowRegistrationsOutbound",
    "IAXpeers",
    "IAXpeerlist",
    "QueueStatus",
    "QueueSummary",
    "ExtensionState",
    "ExtensionStateList",
    "DeviceStateList",
    "PresenceState",
    "PresenceStateList",
    "Getvar",
    "ListCommands",
    "ParkedCalls",
    "Parkinglots",
    "BridgeList",
    "BridgeInfo",
    "MailboxCount",
    "MailboxStatus",
    "DAHDIShowChannels",
    "DongleShowDevices",
    "AgentList",
    "ConfbridgeList",
    "ConfbridgeListRooms",
    "MeetmeList",
    "MeetmeListRooms",
)

_CALL_EVENTS = (
    "Newchannel",
    "Newstate",
    "Newexten",
    "NewCallerid",
    "NewConnectedLine",
    "NewAccountCode",
    "Rename",
    "Hangup",
    "HangupRequest",
    "SoftHangupRequest",
    "Dial",
    "DialBegin",
    "DialEnd",
    "DialState",
    "Bridge",
    "BridgeCreate",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeDestroy",
    "BridgeMerge",
    "LocalBridge",
    "Link",
    "Unlink",
    "Masquerade",
    "OriginateResponse",
    "Hold",
    "Unhold",
    "MusicOnHold",
    "MusicOnHoldStart",
    "MusicOnHoldStop",
    "AttendedTransfer",
    "BlindTransfer",
    "Transfer",
    "Join",
    "Leave",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentConnect",
    "AgentComplete",
    "AgentRingNoAnswer",
    "ExtensionStatus",
    "PeerStatus",
    "DeviceStateChange",
    "DTMF",
    "DTMFBegin",
    "DTMFEnd",
    # The server's own call events (call.ringing, call.answered, ...); with
    # own_extensions_only only those of calls that involved the user's extensions.
    "call.*",
)

_SMS_EVENTS = (
    "ReceivedSMS",
    "UpdateSMS",
    "UpdateSMSSend",
    "DongleSMSStatus",
    "DongleNewSMS",
    "DongleNewSMSBase64",
    "DongleNewUSSD",
    # The server's own: an outgoing SMS changed status; an incoming SMS was stored.
    # Which SMS a user sees is decided per SMS (api.guards): their own outgoing ones,
    # incoming ones of the spans the role grants.
    "sms.status",
    "sms.received",
)

_SUPERVISOR_ACTIONS = (
    "Redirect",
    "Hangup",
    "Originate",
    "Atxfer",
    "BlindTransfer",
    "Bridge",
    "Park",
    "PlayDTMF",
    "Setvar",
    "UserEvent",
    "Queue*",
)


BUILTIN_ROLE_SPECS: Mapping[str, RoleSpec] = {
    # The default for new users: the original product's methods, read-only actions, call
    # and SMS events; of the server's calls only those of their own extensions.
    # (whoami is open to every role; see api.methods.)
    "operator": RoleSpec(
        methods=_OPERATOR_METHODS,
        actions=_READ_ONLY_ACTIONS,
        events=_CALL_EVENTS + _SMS_EVENTS,
        own_calls_only=True,
    ),
    "supervisor": RoleSpec(
        methods=(*_OPERATOR_METHODS, "dispatchEvent"),
        actions=_READ_ONLY_ACTIONS + _SUPERVISOR_ACTIONS,
        events=("*",),  # a wildcard: security events stay out (roles, invariant 3)
        sms_all=True,
    ),
    "admin": RoleSpec(methods=("*",), actions=("*",), events=("*",), admin=True),
}
"""The built-in roles by name; a ``[roles.NAME]`` table may replace or extend one."""
