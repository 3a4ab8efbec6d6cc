"""RADIUS packets on the wire: Access- and Accounting-Requests in, their replies out.

Decoding and encoding are compiled (``ext/_radius.pyx``: the bytes in C, with MD5
and HMAC-MD5 of its own), because the server answers tens of thousands of
requests a second and pyrad's objects cost far more than that allows. The
attribute table used for replies is built here once from the dictionary file
shipped beside this module, which is also the dictionary the tests give pyrad,
the reference this code is checked against.

Authentication follows RFC 2865 (User-Password hiding, Response Authenticator),
RFC 2866 §3 (Accounting Request Authenticator) and RFC 3579 §3.2 / RFC 2869
§5.14 (Message-Authenticator), with the BlastRADIUS (CVE-2024-3596) rules that
FreeRADIUS 3.2.5 calls require_message_authenticator and limit_proxy_state.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyrad.dictionary import Dictionary

from .. import _radius

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

# Attributes the reply table leaves out (see _build_tables), and the vendor whose h323
# VSAs it names.
_VENDOR_SPECIFIC = 26
_PROXY_STATE = 33
_MESSAGE_AUTHENTICATOR = 80
_CISCO = 9


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


def decode(data: bytes, secret: bytes, require_message_authenticator: bool = True) -> Request:
    """Check and decode one received request; raise Dropped for anything to drop.

    Only Access-Request and Accounting-Request are accepted. An Access-Request
    must carry a valid Message-Authenticator when
    ``require_message_authenticator`` is set, and always when it carries a
    Proxy-State; an Accounting-Request must carry a valid Request
    Authenticator. No exception other than Dropped escapes, whatever the bytes.
    """
    request: Request = _radius.decode(data, secret, require_message_authenticator)
    return request


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
    reply: bytes = _radius.encode_reply(request, code, secret, attributes)
    return reply


_radius.setup(Request, Dropped, _ENCODERS, _H323_BY_CODE)
