"""Start-up and shutdown: configuration -> PBX links, bus, API, aiohttp sites.

``serving(config)`` is the async context manager tests and embedders use; ``run`` is
what ``vwell-pbx serve`` calls. Resources are released in reverse order of creation:
sites stop accepting, WebSockets get a close frame, the AMI connections log off, and
in demo mode the embedded simulator stops last.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import os
import random
import secrets
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from vwell_pbx.ami.client import AmiClient, AmiSettings, ConnectionState, ConnectionStatus
from vwell_pbx.api.auth import Authenticator, CredentialDirectory, LoginThrottle
from vwell_pbx.api.calls import call_bus_event, record_of
from vwell_pbx.api.live_calls import LiveCalls
from vwell_pbx.api.role_tables import EventRuleSpec, RoleSpec
from vwell_pbx.api.roles import RoleBook
from vwell_pbx.api.service import Api, ApiSettings, PbxLink
from vwell_pbx.api.sms import SmsOffice, sms_event
from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.config import (
    SIMULATOR_HOST,
    AppConfig,
    ConfigError,
    EventRuleConfig,
    RoleConfig,
    demo_config,
    find_config_path,
    load_config,
)
from vwell_pbx.config import parse_listen_address as _listen
from vwell_pbx.directory import SqlDirectory, open_backend
from vwell_pbx.events.bus import BusEvent, EventBus
from vwell_pbx.events.relay import EventRelay
from vwell_pbx.events.replay import ReplayBuffer
from vwell_pbx.pbx.channels import ChannelRegistry
from vwell_pbx.pbx.dial import DialTemplates
from vwell_pbx.pbx.numbers import PhoneRules
from vwell_pbx.pbx.sms import (
    INCOMING_EVENTS,
    InboxSettings,
    OutboxSettings,
    SmsInbox,
    SmsOutbox,
    make_sms_backend,
)
from vwell_pbx.protocol.message import Message
from vwell_pbx.storage import CallHistoryWriter, CallStore, SmsRow, Storage, open_storage
from vwell_pbx.users import UserDirectory, sha1_of_password
from vwell_pbx.web.app import WebSettings, build_app
from vwell_pbx.web.instance import InstanceHealth, relay_between_instances
from vwell_pbx.web.logs import configure_logging
from vwell_pbx.web.metrics import ServerMetrics
from vwell_pbx.web.peers import parse_proxy_networks
from vwell_pbx.web.sse import StreamSettings
from vwell_pbx.web.webhooks import WEBHOOKS_KEY, WebhookDispatcher

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class RunningServer:
    """A started server: where it listens and what it runs."""

    config: AppConfig
    api: Api
    app: web.Application
    http_url: str
    ws_url: str
    clients: dict[str, AmiClient] = field(default_factory=dict)


def api_settings(config: AppConfig) -> ApiSettings:
    """The API layer's view of the configuration."""
    dial = config.dial
    secret = config.server.secret
    return ApiSettings(
        dial=DialTemplates(
            channel=dial.channel,
            context=dial.context,
            exten=dial.exten,
            priority=dial.priority,
            callerid=dial.callerid,
            variables=dict(dial.variables),
        ),
        dial_timeout_ms=dial.timeout_ms,
        redirect_context=config.redirect.context,
        redirect_priority=config.redirect.priority,
        phone=PhoneRules(rewrite=tuple(config.phone.rewrite)),
        default_wait_ms=config.limits.default_wait_ms,
        max_wait_ms=config.limits.max_wait_ms,
        send_max_fields=config.limits.send_max_fields,
        requests_per_second=config.limits.requests_per_second,
        request_burst=float(config.limits.burst),
        server_secret=secret.get_secret_value() if secret is not None else None,
    )


def outbox_settings(config: AppConfig) -> OutboxSettings:
    """The SMS outbox's view of ``[sms]``."""
    sms = config.sms
    return OutboxSettings(
        interval=sms.interval_seconds,
        max_attempts=sms.max_attempts,
        expire_seconds=sms.expire_minutes * 60,
        retry_seconds=sms.retry_seconds,
        lease_seconds=sms.lease_seconds,
        poll_seconds=sms.poll_seconds,
        answer_seconds=sms.answer_seconds,
        report_seconds=sms.report_seconds,
        max_per_user=sms.outbox_max_per_user,
        max_total=sms.outbox_max,
        per_user_per_minute=config.limits.sms_per_minute_user,
    )


def inbox_settings(config: AppConfig) -> InboxSettings:
    """The SMS inbox's view of ``[sms]``."""
    sms = config.sms
    return InboxSettings(
        part_seconds=sms.inbox_part_seconds,
        max_pending=sms.inbox_pending_max,
        queue_size=sms.inbox_queue_size,
    )


def run_owner(instance: str) -> str:
    """This server run's id in the SMS outbox's claims: the instance's name
    (``[instances] name``), the process and a random part (a restarted process is a new
    owner, so its predecessor's claims are not its own)."""
    return f"{instance[:64]}/{os.getpid()}/{secrets.token_hex(4)}"


def role_specs(config_roles: Mapping[str, RoleConfig]) -> dict[str, RoleSpec]:
    """The configuration's ``[roles.NAME]`` tables as the API layer's plain ``RoleSpec``s."""

    def rule(entry: str | EventRuleConfig) -> str | EventRuleSpec:
        if isinstance(entry, str):
            return entry
        return EventRuleSpec(name=entry.name, fields=dict(entry.fields))

    return {
        name: RoleSpec(
            methods=role.methods,
            actions=role.actions,
            events=tuple(rule(entry) for entry in role.events),
            own_extensions_only=role.own_extensions_only,
            own_calls_only=role.own_calls_only,
            admin=role.admin,
            extends=role.extends,
            sms_spans=role.sms_spans,
            sms_all=role.sms_all,
        )
        for name, role in config_roles.items()
    }


def web_settings(config: AppConfig) -> WebSettings:
    """The web layer's view of the configuration."""
    limits = config.limits
    return WebSettings(
        cors_origins=tuple(config.server.cors_origins),
        max_body_bytes=limits.max_body_bytes,
        ws_max_message_bytes=limits.ws_max_message_bytes,
        json_max_depth=limits.json_max_depth,
        ws_queue_size=limits.ws_queue_size,
        max_subscriptions=limits.max_subscriptions,
        max_inflight=limits.max_inflight,
        max_ws_per_address=limits.max_ws_per_address,
        trusted_proxies=parse_proxy_networks(config.server.trusted_proxies),
        proxy_header=config.server.proxy_header,
    )


def stream_settings(config: AppConfig) -> StreamSettings:
    """The event stream's view of the configuration (``[event_stream]``)."""
    stream = config.event_stream
    return StreamSettings(heartbeat=stream.heartbeat_seconds, retry_ms=stream.retry_ms)


def event_bus(config: AppConfig, *, run_id: str | None = None) -> EventBus:
    """The bus with the ``[events]`` bounds: its replay buffer and resume grace."""
    events = config.events
    return EventBus(
        run_id=run_id,
        replay=ReplayBuffer(max_events=events.replay_size, max_bytes=events.replay_bytes),
        resume_grace=events.resume_grace_seconds,
    )


def _ami_settings(config: AppConfig, index: int) -> AmiSettings:
    pbx = config.pbx[index]
    return AmiSettings(
        host=pbx.host,
        port=pbx.port,
        username=pbx.username,
        secret=pbx.secret.get_secret_value() if pbx.secret is not None else "",
        auth=pbx.auth,
        tls=pbx.tls,
        name=pbx.name,
        connect_timeout=pbx.connect_timeout,
        ping_interval=pbx.ping_interval,
        backoff_max=pbx.reconnect_max,
    )


@contextlib.asynccontextmanager
async def serving(config: AppConfig, *, wait_for_pbx: float = 0.0) -> AsyncIterator[RunningServer]:
    """Run the server for the duration of the ``async with`` block.

    Listen addresses with port 0 get a free port; ``RunningServer`` says which.
    ``wait_for_pbx`` > 0 waits (at most that long) for every PBX to log in first.
    """
    async with contextlib.AsyncExitStack() as stack:
        bus = event_bus(config)
        log.info("event ids of this run: %s-N", bus.run_id)
        metrics = ServerMetrics()
        name = config.instances.name or socket.gethostname()
        storage, relay = await _storage_and_relay(stack, config, bus, name)
        roles = RoleBook(role_specs(config.roles))
        authenticator = await _authentication(stack, config, storage, roles)
        # Entered before the PBX links, so it is closed (and flushed) after them.
        history = await stack.enter_async_context(_history_writer(config, storage.calls))
        outbox, inbox = _sms_outbox_and_inbox(config, storage, bus, metrics, run_owner(name))
        links: dict[str, PbxLink] = {}
        for index, pbx in enumerate(config.pbx):
            links[pbx.name] = await _pbx_link(
                stack, config, index, bus=bus, history=history, outbox=outbox, inbox=inbox
            )
        # Closed before the AMI clients (exit stack order): a send in progress may end.
        await inbox.start()
        stack.push_async_callback(inbox.aclose)
        await outbox.start()
        stack.push_async_callback(outbox.aclose)
        clients = {link.name: link.client for link in links.values()}
        live_calls = {link.name: link.calls for link in links.values() if link.calls is not None}
        metrics.watch(bus, clients)
        metrics.watch_calls(live_calls, history)
        api = Api(
            settings=api_settings(config),
            links=links,
            bus=bus,
            authenticator=authenticator,
            roles=roles,
            relay=relay,
            sms=SmsOffice(outbox=outbox, store=storage.sms),
            observe=metrics.observe,
            call_history=storage.calls,
            history_writer=history,
            keys=storage.keys,
        )
        instance = InstanceHealth(name, storage, relay, channel=config.instances.channel)
        app = build_app(api, web_settings(config), metrics, stream_settings(config), instance)
        # Stopped after the listeners (exit stack order), so no delivery outlives them.
        # Events relayed from another instance were delivered to webhooks there.
        app[WEBHOOKS_KEY] = await stack.enter_async_context(
            WebhookDispatcher(
                config.webhooks,
                bus,
                metrics=metrics,
                skip=relay.is_relayed if relay is not None else None,
            )
        )
        # handler_cancellation: a client that disconnects cancels its request, so a
        # `send` waiting on the PBX stops waiting (and the AMI client forgets it).
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=2.0,
            handler_cancellation=True,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        http_url, ws_url = await _start_sites(runner, config)
        if wait_for_pbx > 0:
            await asyncio.gather(
                *(c.wait_connected(wait_for_pbx) for c in clients.values()), return_exceptions=True
            )
        yield RunningServer(
            config=config, api=api, app=app, http_url=http_url, ws_url=ws_url, clients=clients
        )


async def _storage_and_relay(
    stack: contextlib.AsyncExitStack, config: AppConfig, bus: EventBus, name: str
) -> tuple[Storage, EventRelay | None]:
    """The storage (migrated), and the relay of ``dispatchEvent`` to the other instances
    when the storage can carry it and ``[instances] relay_events`` wants it; both are
    closed with ``stack``."""
    instances = config.instances
    # pg_stat_activity then tells which instance holds which connection.
    settings = replace(config.storage.settings(), application_name=f"vwell-pbx {name}")
    storage = await stack.enter_async_context(open_storage(config.storage.resolved_url, settings))
    log.info("storage: %s (schema version %d)", storage.url, storage.schema.current)
    if not instances.relay_events:
        return storage, None
    relay = await stack.enter_async_context(
        relay_between_instances(
            storage,
            bus,
            channel=instances.channel,
            max_event_bytes=instances.max_event_bytes,
            queue_size=instances.relay_queue_size,
        )
    )
    return storage, relay


async def _directory(
    stack: contextlib.AsyncExitStack, config: AppConfig, storage: Storage, roles: RoleBook
) -> CredentialDirectory[Any]:
    """Where users are: the storage's own table, or another application's database."""
    users = config.users
    if users.backend == "sql":
        backend = await open_backend(
            users.directory_dsn(), users.directory_query(), users.directory_settings()
        )
        stack.push_async_callback(backend.aclose)
        log.info("users: read from %s (backend = sql)", backend.dsn)
        if users.default_role not in roles:
            log.warning("users.default_role %r is not a defined role", users.default_role)
        return SqlDirectory(
            backend, default_role=users.default_role, recheck_seconds=users.auth_cache_seconds
        )
    directory = UserDirectory(storage.users)
    if config.is_demo:
        await _ensure_demo_user(config, directory)
    undefined = roles.unknown(user.role for user in await directory.list())
    if undefined:
        log.warning(
            "users have roles that are not defined (their requests will be refused): %s",
            ", ".join(undefined),
        )
    return directory


async def _authentication(
    stack: contextlib.AsyncExitStack, config: AppConfig, storage: Storage, roles: RoleBook
) -> Authenticator:
    """The user directory and the authenticator on it, lock-outs restored."""
    directory = await _directory(stack, config, storage, roles)
    authenticator = Authenticator(
        directory,
        cache_seconds=config.users.auth_cache_seconds,
        throttle=LoginThrottle(
            after=config.users.throttle_after,
            after_address=config.users.throttle_after_address,
            max_delay=config.users.throttle_max_seconds,
            forget_after=config.users.throttle_forget_seconds,
        ),
        lockouts=storage.lockouts,
    )
    await authenticator.restore_lockouts()
    return authenticator


async def _start_sites(runner: web.AppRunner, config: AppConfig) -> tuple[str, str]:
    """Listen on the HTTP address (and the separate WebSocket one, if set); the URLs."""
    ssl_context = _ssl_context(config)
    http_host, http_port = _listen(config.server.http)
    http_site = web.TCPSite(runner, http_host, http_port, ssl_context=ssl_context)
    await http_site.start()
    http_url = _site_url(http_site, "https" if ssl_context else "http")
    ws_url = _site_url(http_site, "wss" if ssl_context else "ws") + "/api"
    if config.server.ws:
        ws_host, ws_port = _listen(config.server.ws)
        ws_site = web.TCPSite(runner, ws_host, ws_port, ssl_context=ssl_context)
        await ws_site.start()
        ws_url = _site_url(ws_site, "wss" if ssl_context else "ws") + "/api"
    return http_url, ws_url


def _publisher(bus: EventBus, pbx_name: str | None) -> Callable[[Message], None]:
    """The AMI listener that puts PBX events on the bus (events nobody wants are skipped)."""

    def publish(message: Message) -> None:
        if bus.interested(message.name):
            bus.publish(BusEvent.from_message(message, pbx=pbx_name))

    return publish


def _history_writer(config: AppConfig, store: CallStore) -> CallHistoryWriter[CallEvent]:
    """The writer of ended calls (``[calls]`` retention, queue bounds and flush interval)."""
    calls = config.calls
    return CallHistoryWriter(
        store,
        record_of,
        queue_size=calls.history_queue_size,
        batch_size=calls.history_batch_size,
        flush_interval=calls.history_flush_seconds,
        retention_ms=calls.retention_ms,
        purge_interval=calls.purge_interval_seconds,
    )


def _live_calls(
    config: AppConfig,
    name: str,
    client: AmiClient,
    bus: EventBus,
    history: CallHistoryWriter[CallEvent],
) -> LiveCalls | None:
    """The call tracker of one PBX, its events published on the bus and its ended
    calls queued for the history; ``None`` with ``[calls] enabled = false``.

    Started before its AMI client, so that it sees the first connection and every event.
    """
    calls = config.calls
    if not calls.enabled:
        return None
    tracker = CallTracker(
        pbx=name,
        rules=calls.rules(PhoneRules(rewrite=tuple(config.phone.rewrite))),
        limits=calls.limits(),
    )
    live = LiveCalls(
        client,
        tracker,
        list_timeout=calls.list_timeout_seconds,
        reconcile_interval=calls.reconcile_interval_seconds,
    )

    # One sink for both: a sink is a Python call per call event (LiveCalls._emit).
    # The history first: offer() never raises, so nothing the bus does can lose a row
    # (both happen in the same turn of the reader: no client sees one without the other).
    def store_and_publish(event: CallEvent) -> None:
        name = event.name
        if name == "call.ended":  # once per call; call.missed repeats the end
            history.offer(event)  # its snapshot is made by the writer (record_of)
        if bus.interested(name):
            bus.publish(call_bus_event(event))

    live.add_sink(store_and_publish)
    live.start()
    return live


async def _pbx_link(
    stack: contextlib.AsyncExitStack,
    config: AppConfig,
    index: int,
    *,
    bus: EventBus,
    history: CallHistoryWriter[CallEvent],
    outbox: SmsOutbox[SmsRow],
    inbox: SmsInbox[SmsRow],
) -> PbxLink:
    """The ``index``-th ``[[pbx]]``: its AMI client, started, with everything that
    listens to it (the bus, the SMS inbox, the channel registry, the live calls), and
    its SMS backend handed to the outbox; each closed with ``stack``."""
    pbx = config.pbx[index]
    client = AmiClient(_ami_settings(config, index))
    client.add_listener(_publisher(bus, pbx.name if len(config.pbx) > 1 else None))
    client.add_listener(inbox.listener(pbx.name), events=INCOMING_EVENTS)
    channels = ChannelRegistry()
    client.add_listener(channels.observe, events=ChannelRegistry.EVENTS)
    client.add_state_listener(_channels_cleared_when_down(channels))
    live = _live_calls(config, pbx.name, client, bus, history)
    if live is not None:
        stack.push_async_callback(live.aclose)
    await client.start()
    stack.push_async_callback(client.close)
    # The outbox drives the backend (submit, settle); its own in-memory queue stays unused.
    sms = make_sms_backend(client, backend=config.sms.backend, span=config.sms.span)
    outbox.add_pbx(pbx.name, sms, client)
    return PbxLink(name=pbx.name, client=client, sms=sms, channels=channels, calls=live)


def _sms_outbox_and_inbox(
    config: AppConfig, storage: Storage, bus: EventBus, metrics: ServerMetrics, owner: str
) -> tuple[SmsOutbox[SmsRow], SmsInbox[SmsRow]]:
    """The durable SMS outbox and the inbox on the storage (not started yet); every
    change they make is announced as an ``sms.*`` event and counted."""
    announce = _sms_announcer(bus, metrics)
    outbox: SmsOutbox[SmsRow] = SmsOutbox(
        storage.sms, outbox_settings(config), owner=owner, on_change=announce
    )
    inbox: SmsInbox[SmsRow] = SmsInbox(
        storage.sms,
        inbox_settings(config),
        owner=owner,
        rules=PhoneRules(rewrite=tuple(config.phone.rewrite)),
        on_received=announce,
    )
    return outbox, inbox


def _sms_announcer(bus: EventBus, metrics: ServerMetrics) -> Callable[[SmsRow], None]:
    """Every SMS status change (and every stored incoming SMS) as an ``sms.*`` event."""

    def announce(row: SmsRow) -> None:
        metrics.sms_status.labels(row.status).inc()
        bus.publish(sms_event(row))

    return announce


def _channels_cleared_when_down(channels: ChannelRegistry) -> Callable[[ConnectionState], None]:
    """Hangups that happen while the AMI connection is down are never reported: forget."""

    def on_state(state: ConnectionState) -> None:
        if state.status is not ConnectionStatus.CONNECTED:
            channels.clear()

    return on_state


def _site_url(site: web.TCPSite, scheme: str) -> str:
    # Duck-typed, not an isinstance check on asyncio's Server: another event loop's
    # server (uvloop's is not an asyncio.Server) lists its sockets the same way.
    sockets = getattr(site._server, "sockets", None)
    if not sockets:
        raise RuntimeError(f"the {scheme} site has no listening socket")
    host, port = sockets[0].getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _ssl_context(config: AppConfig) -> ssl.SSLContext | None:
    if config.server.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    return context


# --- vwell-pbx serve ----------------------------------------------------------------


def run(config_path: Path | None) -> int:
    """``vwell-pbx serve``: run until SIGINT/SIGTERM; 0 on a clean stop, 1 on bad config."""
    try:
        path = config_path or find_config_path(None)
        config = load_config(path) if path is not None else None
    except ConfigError as exc:
        print(f"vwell-pbx: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_serve(config))
    except ConfigError as exc:  # found at start-up: an embedded simulator's port is taken
        print(f"vwell-pbx: cannot start:\n{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


async def _serve(config: AppConfig | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no add_signal_handler
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if config is None:
            configure_logging("info", "plain")
            data_dir = Path("data")
            await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
            config = demo_config(data_dir)
        else:
            configure_logging(config.server.log_level, config.server.log_format)
        config = await stack.enter_async_context(embedded_simulators(config))
        server = await stack.enter_async_context(serving(config))
        log.info("listening: HTTP %s, WebSocket %s", server.http_url, server.ws_url)
        freeze_startup_heap()
        if config.is_demo:
            _print_demo_help(config, server)
        await stop.wait()
        log.info("shutting down")
    return 0


def freeze_startup_heap() -> None:
    """Keep what start-up built out of the cyclic garbage collector's full passes.

    After start-up the process holds about 60,000 objects the collector tracks (modules,
    classes, functions, the pydantic models, the app) that live until exit. Every full
    collection (generation 2; under load every few seconds) walked them all: about 35 ms
    of CPU on a 2.6 GHz core, during which no event is read or delivered, so at high
    event rates the clients' queues filled and p99 latency jumped. ``gc.freeze()`` moves
    every object alive now to the permanent generation, which collections skip; a full
    pass then walks only what was made since (a few ms with ten clients connected, still
    30-90 ms with a thousand: their tasks and coroutines, see docs/performance.md). A
    ``gc.collect()`` first, so start-up's garbage is freed, not kept. Only for a process
    that runs one server (``vwell-pbx serve``, the bench): objects frozen are never
    collected, so a process that starts and stops servers (the tests) must not call it.
    ``/metrics`` shows the count (``vwell_gc_frozen_objects``).
    """
    gc.collect()
    gc.freeze()
    log.debug("%d start-up objects frozen out of the garbage collector", gc.get_freeze_count())


SIMULATOR_PORT_PROBE_SECONDS = 1.0
"""How long ``embedded_simulators`` tries to connect to an explicit port before binding it."""

DEMO_CALL_HOLD_SECONDS = 8.0
"""The scale of demo mode's simulated calls (``PbxSimulator.start_traffic``'s ``hold``):
phones ring about 1 to 7 s and conversations last about 2 to 18 s, long enough to watch
a call ring, talk and end in a console (the simulator's default of 1 s suits tests)."""


@contextlib.asynccontextmanager
async def embedded_simulators(config: AppConfig) -> AsyncIterator[AppConfig]:
    """Start the PBX simulator for every ``[[pbx]]`` with ``simulator = true``.

    Yields the configuration as its AMI clients must see it: host ``127.0.0.1``, the
    simulator's real port, and the secret, which is made up (random, per run) when the
    table has none. Without an explicit ``port`` a free loopback port is used; an
    explicit port that is taken (something already accepts connections there, or it
    cannot be bound) raises ``ConfigError`` naming ``pbx[i].port``, so the simulator
    never shadows a real PBX. When every PBX is simulated (demo mode), ``[demo]``
    traffic runs on each simulator (``seed`` makes it repeatable); ``serving`` creates
    the ``[demo]`` user if absent.
    """
    if not any(pbx.simulator for pbx in config.pbx):
        yield config
        return
    from vwell_pbx.simulator import PbxSimulator  # noqa: PLC0415  (only demo set-ups need it)

    demo = config.demo
    async with contextlib.AsyncExitStack() as stack:
        actual = []
        for index, pbx in enumerate(config.pbx):
            if not pbx.simulator:
                actual.append(pbx)
                continue
            if pbx.secret is not None:
                secret = pbx.secret.get_secret_value()
            else:
                secret = secrets.token_urlsafe(18)  # nobody needs it but our own client
            if pbx.port != 0 and await _accepts_connections(SIMULATOR_HOST, pbx.port):
                raise _port_taken(index, pbx.port, "something already accepts connections there")
            rng = None if demo.seed is None else random.Random(demo.seed + index)
            simulator = PbxSimulator(
                host=SIMULATOR_HOST, port=pbx.port, username=pbx.username, secret=secret, rng=rng
            )
            try:
                await stack.enter_async_context(simulator)
            except OSError as exc:
                raise _port_taken(index, pbx.port, exc.strerror or str(exc)) from None
            if demo.traffic_per_minute > 0:
                simulator.start_traffic(demo.traffic_per_minute / 60.0, hold=DEMO_CALL_HOLD_SECONDS)
            update = {"host": SIMULATOR_HOST, "port": simulator.port, "secret": SecretStr(secret)}
            actual.append(pbx.model_copy(update=update))
        config = config.model_copy(update={"pbx": tuple(actual)})
        yield config


async def _accepts_connections(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (connected to within a second).

    Checked before binding because binding alone does not prove a port free: where
    ``SO_REUSEADDR`` lets a specific address share a port with a wildcard listener
    (BSD, macOS), the simulator would quietly take the loopback traffic of a real PBX.
    """
    try:
        async with asyncio.timeout(SIMULATOR_PORT_PROBE_SECONDS):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.transport.abort()
    return True


def _port_taken(index: int, port: int, why: str) -> ConfigError:
    field = f"pbx[{index}].port"
    return ConfigError(
        f"{field}: the embedded simulator cannot listen on {SIMULATOR_HOST}:{port} ({why}); "
        "remove `port` to let it pick a free port, or choose another",
        field=field,
    )


async def _ensure_demo_user(config: AppConfig, directory: UserDirectory) -> None:
    """Demo mode: create the ``[demo]`` user if it is not there yet."""
    demo = config.demo
    if await directory.get(demo.login, demo.login2) is None:
        await directory.add(
            demo.login,
            demo.login2,
            sha1_hex=sha1_of_password(demo.password.get_secret_value()),
            role="supervisor",
        )
        print(
            f"demo: created user {demo.login!r} / {demo.login2!r} with password "
            f"{demo.password.get_secret_value()!r} in {directory.location}"
        )


def _demo_traffic_line(per_minute: float) -> str:
    """What the demo banner says about the simulated calls of ``[demo] traffic_per_minute``."""
    if per_minute <= 0:
        return "No simulated calls start on their own ([demo] traffic_per_minute = 0)."
    return (
        f"Simulated calls start about {per_minute:g} times a minute: mostly incoming GSM "
        "calls, with internal calls, a ring group, transfers, hold, pickup and click-to-call "
        "among them; phones ring for a few seconds and conversations last up to about "
        "twenty seconds."
    )


def _print_demo_help(config: AppConfig, server: RunningServer) -> None:
    demo = config.demo
    password = demo.password.get_secret_value()
    sha1 = sha1_of_password(password)
    creds = {"login": demo.login, "login2": demo.login2, "sha1": sha1}
    ping = {
        "method": "send",
        "argument": {**creds, "reqId": "1", "callbackAwait": 1, "fields": {"action": "Ping"}},
    }
    b64 = base64.b64encode(json.dumps(ping, ensure_ascii=False).encode()).decode()
    subscribe = json.dumps(
        {"method": "onEvent", "argument": {**creds, "name": "Newchannel"}}, ensure_ascii=False
    )
    lines = [
        "",
        "vwell-pbx-srv is running in DEMO MODE against its embedded PBX simulator.",
        f"  HTTP API   {server.http_url}/api",
        f"  WebSocket  {server.ws_url}",
        f"  Demo user  login={demo.login!r} login2={demo.login2!r} password={password!r}",
        f"             sha1={sha1}",
        "Try it:",
        f"  curl '{server.http_url}/api?fb64json={b64}'",
        "  In a browser console:",
        f"    ws = new WebSocket('{server.ws_url}'); ws.onmessage = e => console.log(e.data);",
        f"    ws.onopen = () => ws.send(JSON.stringify({subscribe}));",
        _demo_traffic_line(demo.traffic_per_minute),
        "Ctrl+C stops.",
        "",
    ]
    print("\n".join(lines), flush=True)
