"""The client's address behind trusted reverse proxies (``[server] trusted_proxies``).

Behind nginx every connection comes from nginx's address, so per-address bounds (login
throttling, WebSockets per address) and log lines would lump every client together.
A proxy says who its client was in a header: ``X-Forwarded-For: client, proxy1, ...``
(each proxy appends the address it received the request from) or RFC 7239
``Forwarded: for=client, for=proxy1``. Anyone can write such a header, so it is read
**only when the direct peer is a trusted proxy**, and only the header the proxies
are configured to write (``[server] proxy_header``): otherwise a header the proxy does
not touch would pass through from the client untouched.

Which address is the client (``client_address``): walking the header from the right
(the entries the nearest proxies appended), trusted proxies are skipped and the first
address that is not one is the client; entries to its left were written by the client
itself and are never believed. If every entry is a trusted proxy, the leftmost is the
client. An entry that is not an IP address (``unknown``, an obfuscated ``_node``, a
forged word) ends the walk: the last trusted hop is then the best we know, so that
address is used. With no trusted proxies configured (the default) the direct peer is
the client, whatever the headers say.

The middleware gives every handler the result as ``request.remote`` (by
``Request.clone(remote=...)``), so nothing downstream needs to know about proxies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Literal

from aiohttp import web

from vwell_pbx.web.context import SETTINGS_KEY, ProxyNetwork

__all__ = ["client_address", "client_address_middleware", "parse_proxy_networks"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_proxy_networks(entries: Iterable[str]) -> tuple[ProxyNetwork, ...]:
    """``["10.0.0.1", "192.168.0.0/24", "::1"]`` as networks; ``ValueError`` names a bad one."""
    networks: list[ProxyNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network (CIDR) such as 127.0.0.1 or 10.0.0.0/8"
            ) from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An address as a forwarding header writes it: bare, ``[v6]``, with or without a
    port (``1.2.3.4:5678``, ``[2001:db8::1]:4711``), quoted; ``None`` if it is none."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port (a bare IPv6 has several colons)
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _forwarded_for(values: Sequence[str]) -> list[str]:
    """The ``for=`` of each element of RFC 7239 ``Forwarded`` headers, in order (an
    element without one counts as unknown)."""
    found: list[str] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            if not element.strip():
                continue
            node = "unknown"
            for pair in _split_outside_quotes(element, ";"):
                key, _, given = pair.partition("=")
                if key.strip().lower() == "for":
                    node = given
            found.append(node)
    return found


def _is_trusted(address: Address, trusted: Sequence[ProxyNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(
    remote: str | None,
    header_values: Sequence[str],
    trusted: Sequence[ProxyNetwork],
    header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
) -> str | None:
    """The client's address: ``remote`` unless it is a trusted proxy, else what the
    proxies' ``header`` says (see the module docstring for the rules)."""
    direct = _address(remote) if remote else None
    if direct is None or not trusted or not _is_trusted(direct, trusted):
        return remote
    if header == "forwarded":
        entries = _forwarded_for(header_values)
    else:
        entries = [item for value in header_values for item in value.split(",") if item.strip()]
    client: Address = direct
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:
            break  # the hop before cannot be named: keep the last trusted one
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


@web.middleware
async def client_address_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Make ``request.remote`` the real client's address when a trusted proxy sent it."""
    settings = request.app[SETTINGS_KEY]
    if settings.trusted_proxies:
        name = "Forwarded" if settings.proxy_header == "forwarded" else "X-Forwarded-For"
        address = client_address(
            request.remote,
            request.headers.getall(name, []),
            settings.trusted_proxies,
            settings.proxy_header,
        )
        if address is not None and address != request.remote:
            request = request.clone(remote=address)
    return await handler(request)
