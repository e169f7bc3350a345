"""Dispatch: one envelope in, one response object out, whatever the transport.

Order of checks for every request (each failure answers at once and changes nothing):

1. envelope shape (an object with a string ``method`` and an object ``argument``);
2. the method exists;
3. credentials (or the connection's earlier login; ``""`` counts as not sent);
4. the role allows the method (``whoami`` is open to every role);
5. the method's arguments validate against its schema;
6. the per-user request rate;
7. the PBX is chosen (``argument.pbx``, default the first);
8. the method runs (a PBX that is not connected fails it at once: ``pbx_unavailable``).

Every exception is mapped to an ``errCode`` by ``api.errors.error_code``; unexpected
ones are logged with their traceback and answered as ``internal`` without details.
A request whose caller went away is cancelled (``asyncio.CancelledError`` passes
through ``handle``); whatever it was waiting for is released by the cancellation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vwell_pbx.ami.client import AmiClient
from vwell_pbx.api import calls as _calls  # noqa: F401  (registers calls, callHistory)
from vwell_pbx.api import methods as _methods  # noqa: F401  (registers the methods)
from vwell_pbx.api.auth import Authenticator, AuthFailed, Principal
from vwell_pbx.api.envelope import (
    JsonScalar,
    action_answer,
    failure,
    parse_envelope,
    req_id_of,
    success,
    validate_arguments,
)
from vwell_pbx.api.errors import (
    BadRequest,
    ErrorCode,
    Forbidden,
    LimitExceeded,
    MissingCredentials,
    NeedsWebSocket,
    UnknownMethod,
    error_code,
)
from vwell_pbx.api.guards import EventGuards
from vwell_pbx.api.limits import KeyedBuckets
from vwell_pbx.api.live_calls import LiveCalls
from vwell_pbx.api.registry import METHODS, Method
from vwell_pbx.api.roles import Role, RoleBook
from vwell_pbx.api.sms import SmsOffice
from vwell_pbx.events.bus import EventBus, Subscriber
from vwell_pbx.events.relay import EventRelay
from vwell_pbx.pbx.channels import ChannelRegistry
from vwell_pbx.pbx.dial import DialTemplates
from vwell_pbx.pbx.errors import NotSupported, PbxRejected
from vwell_pbx.pbx.numbers import PhoneRules
from vwell_pbx.pbx.sms import SmsSubmitter
from vwell_pbx.storage import CallHistoryWriter, CallStore, KeyStore

log = logging.getLogger(__name__)


def _given(value: object) -> object:
    """A credential argument as sent; ``""`` counts as not sent, as for every optional
    argument (``Arguments``)."""
    return None if value == "" else value


@dataclass(slots=True, eq=False)
class Session:
    """One caller: a WebSocket connection for its lifetime, or a single HTTP request."""

    peer: str
    transport: Literal["http", "ws", "sse"]
    subscriber: Subscriber | None = None
    principal: Principal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PbxLink:
    """One configured PBX: its AMI connection, its SMS backend (which the server's
    outbox drives), its live channels and its live calls (``None`` when ``[calls]
    enabled = false``)."""

    name: str
    client: AmiClient
    sms: SmsSubmitter
    channels: ChannelRegistry = field(default_factory=ChannelRegistry)
    calls: LiveCalls | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """What the methods need from the configuration, already validated."""

    dial: DialTemplates = field(default_factory=DialTemplates)
    dial_timeout_ms: int = 30_000
    redirect_context: str = "default"
    redirect_priority: str = "1"
    phone: PhoneRules = field(default_factory=PhoneRules)
    default_wait_ms: int = 15_000
    max_wait_ms: int = 60_000
    send_max_fields: int = 64
    requests_per_second: float = 20.0
    request_burst: float = 40.0
    server_secret: str | None = None
    server_secret_role: str = "supervisor"
    own_extensions_only: bool = False

    def wait_seconds(self, timeout_ms: int | None) -> float:
        """The caller's ``timeout`` in seconds, defaulted and capped by configuration."""
        wanted = self.default_wait_ms if timeout_ms is None else timeout_ms
        return max(1, min(wanted, self.max_wait_ms)) / 1000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """Everything a method function may use for one request."""

    api: Api
    principal: Principal
    role: Role
    session: Session
    pbx: PbxLink

    @property
    def settings(self) -> ApiSettings:
        """The API settings (templates, limits, number rules)."""
        return self.api.settings

    @property
    def subscriber(self) -> Subscriber:
        """The connection's event queue; ``NeedsWebSocket`` over plain HTTP."""
        if self.session.subscriber is None:
            raise NeedsWebSocket(
                "onEvent, onceEvent and rmEvent need a WebSocket connection "
                "(ws://HOST:8931/api) or the event stream GET /api/events"
            )
        return self.session.subscriber

    @property
    def sms(self) -> SmsOffice:
        """The SMS outbox and store; ``NotSupported`` when the server runs without."""
        if self.api.sms is None:
            raise NotSupported("this server has no SMS storage")
        return self.api.sms


class Api:
    """The transport-independent API: ``await api.handle(envelope, session)``."""

    def __init__(
        self,
        *,
        settings: ApiSettings,
        links: Mapping[str, PbxLink],
        bus: EventBus,
        authenticator: Authenticator,
        roles: RoleBook,
        relay: EventRelay | None = None,
        sms: SmsOffice | None = None,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[str, Mapping[str, Any], float], None] | None = None,
        call_history: CallStore | None = None,
        keys: KeyStore | None = None,
        history_writer: CallHistoryWriter[Any] | None = None,
    ) -> None:
        """``call_history`` and ``keys`` (the storage's) serve ``callHistory``; without
        them it answers ``not_supported``. ``history_writer``: this instance's writer of
        ended calls, flushed by ``callHistory`` first (read your writes).
        ``relay``: where ``dispatchEvent`` also sends its events so that the other
        server instances' subscribers get them (``None``: this instance only).
        ``sms``: the outbox and store behind ``gsmSendSMS``, ``smsStatus`` and
        ``smsHistory`` (``None``: they answer ``not_supported``)."""
        if not links:
            raise ValueError("at least one PBX link is required")
        self.settings = settings
        self.links = dict(links)
        self.default_link = next(iter(self.links.values()))
        self.bus = bus
        self.authenticator = authenticator
        self.roles = roles
        self.relay = relay
        #: The SMS outbox and store (``gsmSendSMS``, ``smsStatus``, ``smsHistory``).
        self.sms = sms
        self.guards = EventGuards(roles)
        self.call_history = call_history
        self.history_writer = history_writer
        self.keys = keys
        self._clock = clock
        self._observe = observe
        self._request_rate = KeyedBuckets(
            rate=settings.requests_per_second, burst=settings.request_burst, clock=clock
        )

    async def handle(self, envelope: object, session: Session) -> dict[str, Any]:
        """Answer one request; never raises (every failure becomes an error envelope),
        except ``CancelledError`` when the caller went away."""
        started = self._clock()
        req_id: JsonScalar = None
        method_name: str | None = None
        try:
            try:
                request = parse_envelope(envelope)
            except Exception:
                # The envelope is malformed: echo what can be found of its reqId.
                req_id = req_id_of(envelope)
                raise
            req_id = request.req_id
            method = self._method(request.method)
            method_name = method.name
            principal = await self._authenticate(request.argument, session)
            role = self._role(principal, method)
            args = validate_arguments(method.schema, request.argument)
            self._take_request_token(principal)
            call = Call(
                api=self, principal=principal, role=role, session=session, pbx=self._link(args.pbx)
            )
            response = success(req_id, await method.func(call, args))
        except Exception as exc:  # every failure becomes an envelope; see error_code
            response = self.error_answer(exc, req_id)
        if self._observe is not None:
            self._observe(method_name or "?", response, self._clock() - started)
        return response

    def error_answer(self, exc: Exception, req_id: JsonScalar = None) -> dict[str, Any]:
        """The error envelope for ``exc``: its ``errCode``, its message, and the extras
        a client needs (the PBX's answer for ``pbx_error``, ``retryAfter``). The web
        layer uses it too, for what fails before an envelope exists."""
        code = error_code(exc)
        if code is ErrorCode.INTERNAL:
            log.exception("internal error while answering a request")
            return failure(req_id, code.value, "internal server error; see the server log")
        extra: dict[str, Any] = {}
        if isinstance(exc, PbxRejected):
            extra.update(action_answer(exc.response, exc.result, exc.action_id))
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float):
            extra["retryAfter"] = round(retry_after, 3)
        return failure(req_id, code.value, str(exc) or code.value, extra)

    @staticmethod
    def _method(name: str) -> Method:
        method = METHODS.get(name)
        if method is None:
            raise UnknownMethod(
                f"unknown method {name[:60]!r}; known methods: " + ", ".join(sorted(METHODS))
            )
        return method

    def _role(self, principal: Principal, method: Method) -> Role:
        role = self.roles.get(principal.role)
        if not (method.every_role or role.allows_method(method.name)):
            log.warning(
                "forbidden: %s/%s (role %s) called %s",
                principal.login,
                principal.login2,
                role.name,
                method.name,
            )
            raise Forbidden(f"role {role.name!r} may not call method {method.name!r}")
        return role

    def _take_request_token(self, principal: Principal) -> None:
        wait = self._request_rate.take((principal.login, principal.login2))
        if wait is not None:
            raise LimitExceeded(
                f"too many requests from {principal.login!r}; retry in {wait:.1f} s"
            )

    def _link(self, name: str | None) -> PbxLink:
        if name is None:
            return self.default_link
        link = self.links.get(name)
        if link is None:
            raise BadRequest(f"argument.pbx must be one of: {', '.join(self.links)}")
        return link

    async def _authenticate(self, argument: Mapping[str, Any], session: Session) -> Principal:
        get = argument.get
        login, login2 = _given(get("login")), _given(get("login2"))
        sha1, secret = _given(get("sha1")), _given(get("secret"))
        if secret is not None and self.settings.server_secret:
            if not isinstance(secret, str):
                raise MissingCredentials("argument.secret must be a string")
            await self.authenticator.verify_secret(
                secret, self.settings.server_secret, session.peer
            )
            principal = Principal(
                login=str(login or "server"),
                login2=str(login2 or ""),
                role=self.settings.server_secret_role,
            )
        elif login is None and login2 is None and sha1 is None:
            remembered = session.principal
            if remembered is None:
                raise MissingCredentials(
                    "argument.login, argument.login2 and argument.sha1 are required"
                )
            if not await self.authenticator.still_valid(remembered):
                # The user was removed or changed since this socket logged in.
                session.principal = None
                raise AuthFailed
            return remembered
        else:
            for key, value in (("login", login), ("login2", login2), ("sha1", sha1)):
                if not isinstance(value, str) or not value:
                    raise MissingCredentials(
                        f"argument.{key} is required and must be a non-empty string"
                    )
            assert isinstance(login, str) and isinstance(login2, str)
            assert isinstance(sha1, str)
            principal = await self.authenticator.authenticate(login, login2, sha1, session.peer)
        if session.transport in ("ws", "sse"):  # connections that keep their login
            self._remember(session, principal)
        return principal

    def _remember(self, session: Session, principal: Principal) -> None:
        session.principal = principal
        if session.subscriber is not None:
            session.subscriber.guard = self.guards.guard_for(principal)
