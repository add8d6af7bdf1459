"""The framework-free parts of the HTTP middlewares (shared by ASGI and WSGI).

Options are parsed and checked once, at construction (:class:`BoundarySettings`);
what runs per request is small: the check of an incoming id's raw bytes
(:func:`accept_header_id`), client-address resolution behind trusted proxies
(:func:`resolve_client_ip`), the access-log line (:func:`log_access`) and the
body of a request rejected for an unsafe id (:func:`rejection_body`).

Everything here treats header values as hostile: a malformed ``X-Forwarded-For``
or ``Forwarded`` value is ignored (the socket peer is used), never raised.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import orjson

from faultlens._ids import MAX_INCOMING_ID_LENGTH, accept_id
from faultlens._metrics import counters
from faultlens.context import get_header_names
from faultlens.errors import ConfigurationError
from faultlens.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterable

    from faultlens.logs import StructuredLogger

__all__ = [
    "BoundarySettings",
    "TrustedProxies",
    "accept_header_id",
    "log_access",
    "parse_forwarded_for",
    "parse_ip",
    "rejection_body",
    "resolve_client_ip",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
ProxyEntry: TypeAlias = str | IPAddress | IPNetwork

MAX_USER_AGENT = 512
"""Longest ``User-Agent`` kept in the context; a longer one is cut (it is free text)."""

# Longest text worth handing to ipaddress: "[" + 39-char IPv6 + "%" zone + "]:" + port.
_MAX_ADDRESS_TEXT = 96
_FORBIDDEN_IN_HEADER_NAME = frozenset(' \t\r\n:"(),/;<=>?@[\\]{}')

ACCESS_LOGGER = "faultlens.access"
REJECTION_ERROR = "invalid_request_id_header"


# --- incoming ids ----------------------------------------------------------------------

_HEX_DIGITS = b"0123456789abcdefABCDEF"
_SAFE_TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
_ULID_FIRST = b"01234567"
_ULID_CHARS = b"0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz"
_UUID_LENGTH = 36
_HEX_ID_LENGTH = 32
_ULID_LENGTH = 26


def accept_header_id(raw: bytes, counter: str) -> str | None:
    """Return the canonical form of an id header's raw bytes, or ``None`` when unsafe.

    The same answer as :func:`faultlens._ids.accept_id` (a test compares them on
    arbitrary bytes), reached with a few C-level ``bytes`` calls for the ids that
    actually arrive (32 hex digits, dashed UUIDs, ULIDs, other safe tokens)
    instead of decoding and running regular expressions.  Anything the fast
    checks do not accept goes to ``accept_id``, which rejects and counts it
    under ``counter``.
    """
    n = len(raw)
    if 0 < n <= MAX_INCOMING_ID_LENGTH:
        if n == _HEX_ID_LENGTH:
            if not raw.translate(None, _HEX_DIGITS):
                return raw.decode("ascii").lower()
        elif n == _UUID_LENGTH:
            compact = raw.replace(b"-", b"")
            if (
                len(compact) == _HEX_ID_LENGTH
                and raw[8] == raw[13] == raw[18] == raw[23] == 0x2D  # "-"
                and not compact.translate(None, _HEX_DIGITS)
            ):
                return compact.decode("ascii").lower()
        elif n == _ULID_LENGTH and raw[0] in _ULID_FIRST and not raw.translate(None, _ULID_CHARS):
            return raw.decode("ascii").upper()
        if raw[:1].isalnum() and not raw.translate(None, _SAFE_TOKEN_CHARS):
            return raw.decode("ascii")
    return accept_id(raw, counter=counter)


# --- trusted proxies ---------------------------------------------------------------------


class TrustedProxies:
    """The proxies whose forwarding headers are believed: addresses and networks.

    Built once from strings (``"10.0.0.1"``, ``"10.0.0.0/8"``, ``"2001:db8::/32"``)
    or :mod:`ipaddress` objects; a bad entry raises
    :class:`~faultlens.errors.ConfigurationError` naming it.  Membership of an
    IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, as dual-stack servers report
    IPv4 peers) is decided by its IPv4 address.
    """

    __slots__ = ("_addresses", "_networks")

    def __init__(self, entries: Iterable[ProxyEntry] = ()) -> None:
        if isinstance(entries, str):
            entries = (entries,)
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            if isinstance(entry, ipaddress.IPv4Address | ipaddress.IPv6Address):
                addresses.add(entry)
                continue
            if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
                networks.append(entry)
                continue
            if not isinstance(entry, str):
                raise ConfigurationError(
                    f"trusted_proxies entries must be IP addresses or networks as strings, "
                    f"not {entry!r}"
                )
            text = entry.strip()
            try:
                if "/" in text:
                    network = ipaddress.ip_network(text, strict=False)
                    if network.num_addresses == 1:
                        addresses.add(network.network_address)
                    else:
                        networks.append(network)
                else:
                    addresses.add(ipaddress.ip_address(text))
            except ValueError as exc:
                raise ConfigurationError(
                    f"trusted_proxies entry {entry!r} is not an IP address or network "
                    f"(examples: '10.0.0.1', '10.0.0.0/8', '2001:db8::/32')"
                ) from exc
        self._addresses = frozenset(addresses)
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._addresses or self._networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address in self._addresses:
            return True
        return any(address in network for network in self._networks)

    def __repr__(self) -> str:
        items = sorted(map(str, self._addresses)) + [str(n) for n in self._networks]
        return f"TrustedProxies({items!r})"


def parse_ip(text: str) -> IPAddress | None:
    """Parse an address as found in forwarding headers, or return ``None``.

    Accepts ``1.2.3.4``, ``1.2.3.4:8080``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:4711`` (surrounding whitespace and double quotes ignored);
    the port is dropped.  Anything else (``unknown``, obfuscated ``_node`` names,
    garbage) gives ``None``.
    """
    text = text.strip().strip('"').strip()
    if not text or len(text) > _MAX_ADDRESS_TEXT:
        return None
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest and not (rest[0] == ":" and rest[1:].isdigit() and rest[1:].isascii()):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not (port.isdigit() and port.isascii()):
            return None
        text = host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split_unquoted(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` outside double-quoted strings (RFC 7230 lists)."""
    if '"' not in text:
        return text.split(separator)
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def parse_forwarded_for(header: str) -> list[str] | None:
    """Return the ``for=`` value of each element of an RFC 7239 ``Forwarded`` header.

    ``for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`` gives
    ``['192.0.2.60', '[2001:db8::1]:4711']`` (quotes removed, values not yet
    parsed as addresses).  Returns ``None`` when the header is malformed or an
    element has no ``for=``: then the whole header is not believed.
    """
    hops: list[str] = []
    for element in _split_unquoted(header, ","):
        if not element.strip():
            continue  # empty list elements are allowed by the list syntax
        found: str | None = None
        for pair in _split_unquoted(element, ";"):
            name, sep, value = pair.partition("=")
            if not sep:
                if pair.strip():
                    return None
                continue
            if name.strip().lower() == "for":
                value = value.strip()
                if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                    value = value[1:-1]
                found = value
        if found is None:
            return None
        hops.append(found)
    return hops or None


def resolve_client_ip(
    peer: str | None,
    trusted: TrustedProxies,
    forwarded: str | None = None,
    x_forwarded_for: str | None = None,
) -> str | None:
    """Return the client address of a request: the peer, or who it forwards for.

    The socket ``peer`` is the answer unless it is a trusted proxy.  Then the
    forwarding chain (``Forwarded`` if present and well-formed, else
    ``X-Forwarded-For``; several fields already joined with ``,``) is walked from
    the right, skipping trusted proxies, and the first untrusted address is the
    client (the left-most one if every hop is trusted).  A malformed hop on the
    way, or no usable chain, gives the peer: a value that cannot be read is not
    believed, and never raises.
    """
    if peer is None or not trusted:
        return peer
    if parse_ip(peer) not in trusted:
        return peer
    hops: list[str] | None = None
    if forwarded is not None:
        hops = parse_forwarded_for(forwarded)
    if hops is None and x_forwarded_for is not None:
        hops = [hop for hop in x_forwarded_for.split(",") if hop.strip()]
    if not hops:
        return peer
    chosen: IPAddress | None = None
    for raw in reversed(hops):
        address = parse_ip(raw)
        if address is None:
            return peer
        chosen = address
        if address not in trusted:
            break
    return str(chosen) if chosen is not None else peer


# --- settings --------------------------------------------------------------------------


def _check_header_name(option: str, name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or not name.isascii()
        or not name.isprintable()
        or any(char in _FORBIDDEN_IN_HEADER_NAME for char in name)
    ):
        raise ConfigurationError(f"{option} must be an HTTP header name, not {name!r}")
    return name


def _check_level(level: int | str) -> int:
    if isinstance(level, bool):
        raise ConfigurationError(f"access_log_level must be a logging level, not {level!r}")
    if isinstance(level, int):
        return level
    if isinstance(level, str):
        value = logging.getLevelNamesMapping().get(level.upper())
        if value is not None:
            return value
    raise ConfigurationError(
        f"access_log_level must be a logging level such as logging.INFO or 'INFO', not {level!r}"
    )


@dataclass(frozen=True, slots=True)
class BoundarySettings:
    """The options of an HTTP middleware, checked and precomputed once.

    Build with :meth:`create`, which takes the middlewares' keyword options.
    """

    correlation_header: str
    request_id_header: str
    trusted_proxies: TrustedProxies
    reject_invalid_ids: bool
    access_log: bool
    access_log_level: int
    response_headers: bool
    logger: StructuredLogger

    @classmethod
    def create(
        cls,
        *,
        correlation_header: str | None = None,
        request_id_header: str | None = None,
        trusted_proxies: Iterable[ProxyEntry] | TrustedProxies = (),
        reject_invalid_ids: bool = False,
        access_log: bool = True,
        access_log_level: int | str = logging.INFO,
        response_headers: bool = True,
    ) -> BoundarySettings:
        """Check the options and return the settings; raises ConfigurationError."""
        default_correlation, default_request = get_header_names()
        correlation = _check_header_name(
            "correlation_header", correlation_header or default_correlation
        )
        request = _check_header_name("request_id_header", request_id_header or default_request)
        if correlation.lower() == request.lower():
            raise ConfigurationError(
                f"correlation_header and request_id_header must differ, both are {correlation!r}"
            )
        if correlation.lower() in ("traceparent", "tracestate") or request.lower() in (
            "traceparent",
            "tracestate",
        ):
            raise ConfigurationError(
                "traceparent and tracestate are W3C headers the middleware already handles; "
                "choose another correlation_header / request_id_header"
            )
        proxies = (
            trusted_proxies
            if isinstance(trusted_proxies, TrustedProxies)
            else TrustedProxies(trusted_proxies)
        )
        return cls(
            correlation_header=correlation,
            request_id_header=request,
            trusted_proxies=proxies,
            reject_invalid_ids=bool(reject_invalid_ids),
            access_log=bool(access_log),
            access_log_level=_check_level(access_log_level),
            response_headers=bool(response_headers),
            logger=get_logger(ACCESS_LOGGER),
        )


# --- what a request produces ------------------------------------------------------------------


def log_access(
    logger: StructuredLogger,
    level: int,
    *,
    method: str,
    path: str,
    status: int,
    duration_ns: int,
    nbytes: int,
    client_ip: str | None,
    error: BaseException | None = None,
) -> None:
    """Write the access-log line of one request (never the query string); never raises.

    ``error`` set: ``"request failed"`` at ERROR with the exception, or
    ``"request cancelled"`` at WARNING for a cancellation (``BaseException``
    that is not an ``Exception``, e.g. the client went away).
    """
    duration_ms = round(duration_ns / 1_000_000, 3)
    try:
        if error is None:
            # The fields as keywords, not **dict: one dict fewer on every request.
            logger.log(
                level,
                "request completed",
                method=method,
                path=path,
                status=status,
                duration_ms=duration_ms,
                bytes=nbytes,
                client_ip=client_ip,
            )
            return
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "bytes": nbytes,
            "client_ip": client_ip,
        }
        if isinstance(error, Exception):
            logger.log(logging.ERROR, "request failed", exc_info=error, **fields)
        else:
            logger.log(
                logging.WARNING, "request cancelled", error_type=type(error).__name__, **fields
            )
    except Exception:  # logging is documented never to raise; belt and braces on the boundary
        counters.incr("logs.write_errors")


def rejection_body(correlation_id: str, correlation_header: str, request_id_header: str) -> bytes:
    """The JSON body of the 400 answer to a request carrying an unsafe id.

    Names the headers and the rule, never the rejected value.
    """
    return orjson.dumps(
        {
            "error": REJECTION_ERROR,
            "message": (
                f"The {correlation_header} or {request_id_header} header is not a valid id: "
                "send 1 to 128 letters, digits and . _ : - (a UUID is fine), or omit it."
            ),
            "correlation_id": correlation_id,
        }
    )
