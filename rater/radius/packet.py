"""RADIUS packets on the wire: Access- and Accounting-Requests in, their replies out.

Decoding and encoding are written over the bytes with struct, hashlib and hmac,
because the server answers tens of thousands of requests a second and pyrad's
objects cost far more than that allows. The attribute table used for replies is
built once from the dictionary file shipped beside this module, which is also
the dictionary the tests give pyrad, the reference this code is checked against.

Authentication follows RFC 2865 (User-Password hiding, Response Authenticator),
RFC 2866 §3 (Accounting Request Authenticator) and RFC 3579 §3.2 / RFC 2869
§5.14 (Message-Authenticator), with the BlastRADIUS (CVE-2024-3596) rules that
FreeRADIUS 3.2.5 calls require_message_authenticator and limit_proxy_state.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyrad.dictionary import Dictionary

ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCOUNTING_REQUEST = 4
ACCOUNTING_RESPONSE = 5

# RFC 2865 §3: the largest packet a RADIUS peer may send.
MAX_PACKET = 4096

DROP_REASONS: tuple[str, ...] = (
    "malformed",
    "oversized",
    "unknown-code",
    "bad-authenticator",
    "no-message-authenticator",
    "bad-message-authenticator",
    "proxy-state-without-message-authenticator",
)

DICTIONARY_PATH = Path(__file__).with_name("dictionary")

# Attribute types the decoder reads (RFC 2865, 2866, 2869, 3162).
_USER_NAME = 1
_USER_PASSWORD = 2
_NAS_IP_ADDRESS = 4
_REPLY_MESSAGE = 18
_VENDOR_SPECIFIC = 26
_CALLED_STATION_ID = 30
_CALLING_STATION_ID = 31
_PROXY_STATE = 33
_ACCT_STATUS_TYPE = 40
_ACCT_DELAY_TIME = 41
_ACCT_SESSION_ID = 44
_ACCT_SESSION_TIME = 46
_EVENT_TIMESTAMP = 55
_MESSAGE_AUTHENTICATOR = 80
_NAS_IPV6_ADDRESS = 95

_CISCO = 9
_CISCO_AVPAIR = 1

# Single-valued attributes kept (first occurrence) for the Request fields.
_KEPT = frozenset({
    _USER_NAME, _USER_PASSWORD, _NAS_IP_ADDRESS, _CALLED_STATION_ID, _CALLING_STATION_ID,
    _ACCT_STATUS_TYPE, _ACCT_SESSION_ID, _ACCT_SESSION_TIME, _EVENT_TIMESTAMP,
    _NAS_IPV6_ADDRESS, _ACCT_DELAY_TIME,
})

_ZERO16 = bytes(16)
_CISCO_VENDOR_ID = _CISCO.to_bytes(4, "big")
# Message-Authenticator with its value zeroed, as it is when the HMAC is taken.
_MA_ZEROED = bytes((_MESSAGE_AUTHENTICATOR, 18)) + _ZERO16

_HEADER = struct.Struct(">BBH")
_INT_ATTR = struct.Struct(">BBI")
_VSA_HEADER = struct.Struct(">BBIBB")
_VSA_INT = struct.Struct(">BBIBBI")


class Dropped(Exception):
    """A request the server must drop without an answer.

    ``reason`` is one of DROP_REASONS (for counters); the message says what
    exactly was wrong with the packet, for a debug log.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class Request:
    """What the server needs from a checked Access- or Accounting-Request.

    Single-valued attributes hold their first occurrence; absent ones are None.
    ``cisco`` maps each h323-* VSA name to its value (the "name=" prefix Cisco
    gateways put in front removed) and each Cisco-AVPair "key=value" to
    ``cisco[key] = value``, the first occurrence of a name again.
    """

    code: int
    identifier: int
    authenticator: bytes
    user_name: str | None
    password: str | None
    calling: str | None
    called: str | None
    nas_ip: str | None
    session_id: str | None
    status_type: int | None
    session_time: int | None
    event_time: int | None
    message_authenticator: bool
    proxy_state: list[bytes]
    cisco: dict[str, str]
    #: Acct-Delay-Time: how long the NAS held an Accounting-Request before sending it.
    delay_time: int | None = None


@functools.cache
def dictionary() -> Dictionary:
    """The shipped RADIUS dictionary as a pyrad Dictionary, read once."""
    return Dictionary(str(DICTIONARY_PATH))


# --- decoding ----------------------------------------------------------------


def decode(data: bytes, secret: bytes, require_message_authenticator: bool = True) -> Request:
    """Check and decode one received request; raise Dropped for anything to drop.

    Only Access-Request and Accounting-Request are accepted. An Access-Request
    must carry a valid Message-Authenticator when
    ``require_message_authenticator`` is set, and always when it carries a
    Proxy-State; an Accounting-Request must carry a valid Request
    Authenticator. No exception other than Dropped escapes, whatever the bytes.
    """
    size = len(data)
    if size > MAX_PACKET:
        raise Dropped("oversized", f"{size} bytes, more than the {MAX_PACKET} RADIUS allows")
    if size < 20:
        raise Dropped("malformed", f"{size} bytes, shorter than the 20-byte header")
    code = data[0]
    length = (data[2] << 8) | data[3]
    if length < 20 or length > size:
        raise Dropped("malformed", f"Length field says {length} bytes, {size} received")
    if code != ACCESS_REQUEST and code != ACCOUNTING_REQUEST:
        raise Dropped("unknown-code", f"code {code} is neither Access- nor Accounting-Request")
    if length < size:
        # RFC 2865 §3: octets past Length are padding, not part of the packet.
        data = data[:length]

    kept: dict[int, bytes] = {}
    proxy_state: list[bytes] = []
    vsas: list[bytes] = []
    ma_at = -1
    pos = 20
    while pos < length:
        if pos + 1 == length:
            raise Dropped("malformed", f"attribute header cut short at offset {pos}")
        kind = data[pos]
        end = pos + data[pos + 1]
        if end < pos + 2 or end > length:
            raise Dropped("malformed", f"attribute {kind} at offset {pos} has length "
                                       f"{data[pos + 1]}, packet ends at {length}")
        if kind in _KEPT:
            if kind not in kept:
                kept[kind] = data[pos + 2:end]
        elif kind == _PROXY_STATE:
            proxy_state.append(data[pos + 2:end])
        elif kind == _VENDOR_SPECIFIC:
            vsas.append(data[pos + 2:end])
        elif kind == _MESSAGE_AUTHENTICATOR:
            if ma_at >= 0:
                raise Dropped("bad-message-authenticator", "more than one Message-Authenticator")
            ma_at = pos
        pos = end

    authenticator = data[4:20]
    if code == ACCESS_REQUEST:
        if ma_at >= 0:
            _check_message_authenticator(data, ma_at, authenticator, secret)
        elif proxy_state:
            # A forged reply in the BlastRADIUS attack hides its collision
            # blocks in Proxy-State; an unsigned request carrying one is refused
            # even where unsigned requests are otherwise allowed.
            raise Dropped("proxy-state-without-message-authenticator",
                          "Access-Request with Proxy-State but no Message-Authenticator")
        elif require_message_authenticator:
            raise Dropped("no-message-authenticator",
                          "Access-Request without Message-Authenticator")
    else:
        expected = hashlib.md5(data[:4] + _ZERO16 + data[20:] + secret).digest()
        if not hmac.compare_digest(expected, authenticator):
            raise Dropped("bad-authenticator",
                          "Request Authenticator does not match the packet and secret")
        if ma_at >= 0:
            # Signed before the Request Authenticator existed, so over zeros in
            # its place (FreeRADIUS and pyrad do the same).
            _check_message_authenticator(data, ma_at, _ZERO16, secret)

    user_name = password = calling = called = nas_ip = session_id = None
    status_type = session_time = event_time = delay_time = None
    for kind, raw in kept.items():
        if kind == _USER_NAME:
            user_name = raw.decode("utf-8", "replace")
        elif kind == _CALLING_STATION_ID:
            calling = raw.decode("utf-8", "replace")
        elif kind == _CALLED_STATION_ID:
            called = raw.decode("utf-8", "replace")
        elif kind == _ACCT_SESSION_ID:
            session_id = raw.decode("utf-8", "replace")
        elif kind == _USER_PASSWORD:
            # Hidden with the Request Authenticator, which only an
            # Access-Request has; RFC 2866 keeps it out of accounting.
            if code == ACCESS_REQUEST:
                password = _unhide_password(raw, authenticator, secret)
        elif kind == _NAS_IP_ADDRESS:
            if len(raw) != 4:
                raise Dropped("malformed", f"NAS-IP-Address of {len(raw)} bytes, not 4")
            nas_ip = socket.inet_ntoa(raw)
        elif kind == _NAS_IPV6_ADDRESS:
            if len(raw) != 16:
                raise Dropped("malformed", f"NAS-IPv6-Address of {len(raw)} bytes, not 16")
            if _NAS_IP_ADDRESS not in kept:
                nas_ip = str(ipaddress.IPv6Address(raw))
        else:
            if len(raw) != 4:
                raise Dropped("malformed", f"attribute {kind} is an integer of {len(raw)} "
                                           "bytes, not 4")
            number = int.from_bytes(raw, "big")
            if kind == _ACCT_STATUS_TYPE:
                status_type = number
            elif kind == _ACCT_SESSION_TIME:
                session_time = number
            elif kind == _ACCT_DELAY_TIME:
                delay_time = number
            else:
                event_time = number

    return Request(code, data[1], authenticator, user_name, password, calling, called, nas_ip,
                   session_id, status_type, session_time, event_time, ma_at >= 0, proxy_state,
                   _cisco_attributes(vsas) if vsas else {}, delay_time)


@functools.lru_cache(maxsize=4096)
def _hmac_pads(secret: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """MD5 states after the inner and outer HMAC pads of ``secret`` (RFC 2104).

    hmac.digest sets up an OpenSSL context on every call, which costs more than
    the hashing; copying these two states instead takes well under half the time.
    """
    if len(secret) > 64:
        secret = hashlib.md5(secret).digest()
    key = secret.ljust(64, b"\0")
    return (hashlib.md5(bytes(b ^ 0x36 for b in key)),
            hashlib.md5(bytes(b ^ 0x5C for b in key)))


def _hmac_md5(secret: bytes, message: bytes) -> bytes:
    """HMAC-MD5 of ``message`` under ``secret``, the same as hmac.digest(..., "md5")."""
    inner, outer = _hmac_pads(secret)
    inner = inner.copy()
    inner.update(message)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


def _check_message_authenticator(data: bytes, at: int, vector: bytes, secret: bytes) -> None:
    """Drop the packet unless the Message-Authenticator at offset ``at`` is right.

    The HMAC-MD5 covers the packet with ``vector`` in the Authenticator field
    and the Message-Authenticator value zeroed (RFC 3579 §3.2).
    """
    if data[at + 1] != 18:
        raise Dropped("bad-message-authenticator",
                      f"Message-Authenticator of {data[at + 1] - 2} bytes, not 16")
    signed = b"".join((data[:4], vector, data[20:at + 2], _ZERO16, data[at + 18:]))
    if not hmac.compare_digest(_hmac_md5(secret, signed), data[at + 2:at + 18]):
        raise Dropped("bad-message-authenticator",
                      "Message-Authenticator does not match the packet and secret")


def _unhide_password(hidden: bytes, authenticator: bytes, secret: bytes) -> str:
    """Reverse the User-Password hiding of RFC 2865 §5.2."""
    size = len(hidden)
    if size < 16 or size > 128 or size % 16:
        raise Dropped("malformed", f"User-Password of {size} bytes, not 16..128 in steps of 16")
    plain = bytearray()
    chain = authenticator
    for at in range(0, size, 16):
        block = hidden[at:at + 16]
        pad = hashlib.md5(secret + chain).digest()
        plain += (int.from_bytes(pad, "big") ^ int.from_bytes(block, "big")).to_bytes(16, "big")
        chain = block
    # The client pads with NULs to a multiple of 16; they are not the password.
    return plain.rstrip(b"\0").decode("utf-8", "replace")


def _cisco_attributes(vsas: list[bytes]) -> dict[str, str]:
    """The h323-* VSAs and Cisco-AVPairs among the Vendor-Specific attributes."""
    cisco: dict[str, str] = {}
    for vsa in vsas:
        size = len(vsa)
        if size < 4:
            raise Dropped("malformed", f"Vendor-Specific of {size} bytes has no vendor id")
        if vsa[:4] != _CISCO_VENDOR_ID:
            continue
        # RFC 2865 §5.26 layout; one attribute 26 may hold several of them.
        pos = 4
        while pos < size:
            if pos + 1 == size:
                raise Dropped("malformed", "Cisco VSA header cut short")
            sub = vsa[pos]
            end = pos + vsa[pos + 1]
            if end < pos + 2 or end > size:
                raise Dropped("malformed", f"Cisco VSA {sub} has length {vsa[pos + 1]}, "
                                           f"{size - pos} bytes left")
            if sub == _CISCO_AVPAIR:
                key, _, value = vsa[pos + 2:end].decode("utf-8", "replace").partition("=")
                cisco.setdefault(key, value)
            else:
                named = _H323_BY_CODE.get(sub)
                if named is not None:
                    name, prefix = named
                    text = vsa[pos + 2:end].decode("utf-8", "replace")
                    cisco.setdefault(name, text.removeprefix(prefix))
            pos = end
    return cisco


# --- encoding ----------------------------------------------------------------

# How a reply attribute is written: data type, code, vendor id (0 for a
# standard attribute), value prefix ("" except for the h323-* VSAs) and the
# dictionary's named values of an integer.
_STRING, _OCTETS, _INTEGER, _IPADDR, _IPV6ADDR = range(5)
_TYPES = {"string": _STRING, "octets": _OCTETS, "integer": _INTEGER, "date": _INTEGER,
          "ipaddr": _IPADDR, "ipv6addr": _IPV6ADDR}
_Spec = tuple[int, int, int, str, dict[str, int]]
# Standard attributes encode_reply writes itself (Message-Authenticator,
# Proxy-State) or that are no value of their own (Vendor-Specific).
_NOT_GIVEN = frozenset({_MESSAGE_AUTHENTICATOR, _PROXY_STATE, _VENDOR_SPECIFIC})


def _build_tables(d: Dictionary) -> tuple[dict[str, _Spec], dict[int, tuple[str, str]]]:
    """The reply encoding table by attribute name, and the h323 VSA names by code."""
    encoders: dict[str, _Spec] = {}
    h323: dict[int, tuple[str, str]] = {}
    for name, attr in d.attributes.items():
        kind = _TYPES.get(attr.type)
        vendor = d.vendors.GetForward(attr.vendor) if attr.vendor else 0
        if kind is None or (not vendor and attr.code in _NOT_GIVEN):
            continue
        prefix = ""
        if vendor == _CISCO and name.startswith("h323-"):
            prefix = name + "="
            h323[attr.code] = (name, prefix)
        values = {key: int.from_bytes(raw, "big") for key, raw in attr.values.forward.items()}
        encoders[name] = (kind, attr.code, vendor, prefix, values)
    return encoders, h323


_ENCODERS, _H323_BY_CODE = _build_tables(dictionary())


def encode_reply(request: Request, code: int, secret: bytes,
                 attributes: Sequence[tuple[str, str | int | bytes]]) -> bytes:
    """Encode the reply to ``request``: Access-Accept/-Reject or Accounting-Response.

    ``attributes`` are (dictionary name, value) pairs in the order to send.
    Integers take an int, one of the dictionary's VALUE names or decimal
    digits; strings take a str (an int is written in decimal). h323-* VSAs get
    the "name=" prefix Cisco gateways expect unless the value already has it.
    A Reply-Message longer than one attribute holds is split into several.

    Access-Accept and Access-Reject start with a Message-Authenticator, and
    so does an Accounting-Response to a request that carried one; every
    Proxy-State of the request is copied, in order, to the end.

    Raises KeyError for a name not in the dictionary, ValueError for a value
    that does not fit its attribute or a reply that is too long, or a code
    that does not answer the request's code.
    """
    if code in (ACCESS_ACCEPT, ACCESS_REJECT):
        if request.code != ACCESS_REQUEST:
            raise ValueError(f"reply code {code} does not answer request code {request.code}")
        signed = True
        vector = request.authenticator
    elif code == ACCOUNTING_RESPONSE:
        if request.code != ACCOUNTING_REQUEST:
            raise ValueError(f"reply code {code} does not answer request code {request.code}")
        signed = request.message_authenticator
        # FreeRADIUS and pyrad sign an Accounting-Response over zeros.
        vector = _ZERO16
    else:
        raise ValueError(f"cannot encode a reply with code {code}")

    parts = [_MA_ZEROED] if signed else []
    for name, value in attributes:
        kind, number, vendor, prefix, named = _ENCODERS[name]
        if kind == _INTEGER:
            if not isinstance(value, int):
                value = _integer_value(name, value, named)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name} = {value} does not fit 32 bits")
            if vendor:
                parts.append(_VSA_INT.pack(26, 12, vendor, number, 6, value))
            else:
                parts.append(_INT_ATTR.pack(number, 6, value))
            continue
        if kind == _STRING and isinstance(value, str):
            if prefix and not value.startswith(prefix):
                value = prefix + value
            raw = value.encode()
        else:
            raw = _value_bytes(name, kind, prefix, value)
        if vendor:
            if len(raw) > 247:
                raise ValueError(f"{name} value of {len(raw)} bytes, at most 247 fit")
            parts.append(_VSA_HEADER.pack(26, len(raw) + 8, vendor, number, len(raw) + 2))
            parts.append(raw)
        elif len(raw) <= 253:
            parts.append(bytes((number, len(raw) + 2)))
            parts.append(raw)
        elif number == _REPLY_MESSAGE:
            for chunk in _split_text(raw):
                parts.append(bytes((number, len(chunk) + 2)))
                parts.append(chunk)
        else:
            raise ValueError(f"{name} value of {len(raw)} bytes, at most 253 fit")
    for state in request.proxy_state:
        parts.append(bytes((_PROXY_STATE, len(state) + 2)))
        parts.append(state)

    body = b"".join(parts)
    length = 20 + len(body)
    if length > MAX_PACKET:
        raise ValueError(f"reply of {length} bytes, more than {MAX_PACKET}")
    header = _HEADER.pack(code, request.identifier, length)
    if signed:
        mac = _hmac_md5(secret, header + vector + body)
        body = _MA_ZEROED[:2] + mac + body[18:]
    response = hashlib.md5(header + request.authenticator + body + secret).digest()
    return header + response + body


def _integer_value(name: str, value: str | bytes, named: dict[str, int]) -> int:
    if isinstance(value, str):
        number = named.get(value)
        if number is not None:
            return number
        if value.isascii() and value.isdigit():
            return int(value)
    raise ValueError(f"{name} takes an integer or one of its value names, not {value!r}")


def _value_bytes(name: str, kind: int, prefix: str, value: str | int | bytes) -> bytes:
    """The bytes of a string, octets or address value."""
    if kind in (_STRING, _OCTETS):
        if isinstance(value, bytes):
            return value
        text = str(value)
        if prefix and not text.startswith(prefix):
            text = prefix + text
        return text.encode("utf-8")
    if isinstance(value, bytes):
        raise ValueError(f"{name} takes an address, not bytes")
    try:
        if kind == _IPADDR:
            return ipaddress.IPv4Address(value).packed
        return ipaddress.IPv6Address(value).packed
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _split_text(raw: bytes) -> list[bytes]:
    """Cut UTF-8 text into pieces of at most 253 bytes, not inside a character."""
    pieces = []
    while len(raw) > 253:
        cut = 253
        # Back off continuation bytes (10xxxxxx) so that every piece decodes.
        while cut > 250 and raw[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(raw[:cut])
        raw = raw[cut:]
    pieces.append(raw)
    return pieces
