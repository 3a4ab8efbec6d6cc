"""rater.radius.packet held to pyrad, the reference RADIUS implementation.

Requests that pyrad builds decode to exactly what was put in them; replies
encode_reply writes pass pyrad's checks and equal, byte for byte, the replies
pyrad builds for the same attributes; fixed packets decode to fixed values;
every drop reason has a packet that triggers it and nothing else; and no bytes
at all, random or a mutated valid packet, make decode raise anything but
Dropped. FreeRADIUS's dictionaries and radclient (installed by the tests when
missing) are checked against too.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pyrad.packet as pyrad_packet
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pyrad.dictionary import Dictionary
from test_radius_serve import ensure_radclient

from rater import _radius
from rater.radius.packet import (
    ACCESS_ACCEPT,
    ACCESS_REJECT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    DROP_REASONS,
    MAX_PACKET,
    Dropped,
    Request,
    decode,
    dictionary,
    encode_reply,
)

SECRET = b"xyzzy5461"
DICT = dictionary()

H323 = {
    "h323-remote-address": 23, "h323-conf-id": 24, "h323-setup-time": 25,
    "h323-call-origin": 26, "h323-call-type": 27, "h323-connect-time": 28,
    "h323-disconnect-time": 29, "h323-disconnect-cause": 30, "h323-voice-quality": 31,
    "h323-gw-id": 33, "h323-incoming-conf-id": 35, "h323-credit-amount": 101,
    "h323-credit-time": 102, "h323-return-code": 103, "h323-prompt-id": 104,
    "h323-time-and-day": 105, "h323-redirect-number": 106, "h323-preferred-lang": 107,
    "h323-redirect-ip-address": 108, "h323-billing-model": 109, "h323-currency": 110,
}

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --- building packets ---------------------------------------------------------


def attr(kind: int, value: bytes) -> bytes:
    return bytes((kind, len(value) + 2)) + value


def vsa(vendor: int, *subs: tuple[int, bytes]) -> bytes:
    return attr(26, struct.pack(">I", vendor) + b"".join(attr(t, v) for t, v in subs))


def raw_access(attrs: bytes, ident: int = 1, authenticator: bytes = bytes(range(16)),
               code: int = ACCESS_REQUEST) -> bytes:
    """An unsigned Access-Request (or any code) from raw attribute bytes."""
    return struct.pack(">BBH", code, ident, 20 + len(attrs)) + authenticator + attrs


def sign_access(data: bytes, secret: bytes = SECRET) -> bytes:
    """Fill in the first Message-Authenticator of an Access-Request (RFC 3579 §3.2)."""
    at = 20
    while at + 1 < len(data) and data[at] != 80 and data[at + 1] >= 2:
        at += data[at + 1]
    if at + 1 >= len(data) or data[at] != 80 or data[at + 1] != 18:
        return data
    zeroed = data[:at + 2] + bytes(16) + data[at + 18:]
    return data[:at + 2] + hmac.digest(secret, zeroed, "md5") + data[at + 18:]


def raw_accounting(attrs: bytes, ident: int = 1, secret: bytes = SECRET) -> bytes:
    """An Accounting-Request with a correct Request Authenticator (RFC 2866 §3)."""
    header = struct.pack(">BBH", ACCOUNTING_REQUEST, ident, 20 + len(attrs))
    return header + hashlib.md5(header + bytes(16) + attrs + secret).digest() + attrs


def pyrad_access(attrs: list[tuple[str, Any]], password: bytes | None = None,
                 proxy_state: list[bytes] | None = None, ma: bool = True, ident: int = 1,
                 authenticator: bytes = bytes(range(16))) -> tuple[Any, bytes]:
    """An Access-Request built by pyrad, and its bytes."""
    pkt = pyrad_packet.AuthPacket(id=ident, secret=SECRET, dict=DICT,
                                  authenticator=authenticator)
    for name, value in attrs:
        pkt.AddAttribute(name, value)
    if password is not None:
        pkt["User-Password"] = pkt.PwCrypt(password)
    if proxy_state:
        pkt[33] = list(proxy_state)      # by code: raw bytes, never read as "0x..." hex
    if ma:
        pkt.add_message_authenticator()
    return pkt, pkt.RequestPacket()


def pyrad_accounting(attrs: list[tuple[str, Any]], proxy_state: list[bytes] | None = None,
                     ma: bool = False, ident: int = 1) -> tuple[Any, bytes]:
    """An Accounting-Request built by pyrad, and its bytes."""
    pkt = pyrad_packet.AcctPacket(id=ident, secret=SECRET, dict=DICT)
    for name, value in attrs:
        pkt.AddAttribute(name, value)
    if proxy_state:
        pkt[33] = list(proxy_state)
    if ma:
        pkt.add_message_authenticator()
    return pkt, pkt.RequestPacket()


STATUS_START = attr(40, struct.pack(">I", 1))


def reason(data: bytes, require: bool = True, secret: bytes = SECRET) -> str:
    with pytest.raises(Dropped) as caught:
        decode(data, secret, require)
    assert str(caught.value)           # a message for the debug log
    return caught.value.reason


# --- strategies ---------------------------------------------------------------


def text(max_chars: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_chars).filter(lambda s: len(s.encode()) <= 253)


optional_text = st.none() | text(60)
h323_values = st.dictionaries(
    st.sampled_from(sorted(H323)), st.tuples(text(40), st.booleans()), max_size=6)
avpairs = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz-:0123456789", min_size=1, max_size=20)
    .filter(lambda k: not k.startswith("h323-")),
    text(40), max_size=4)
proxy_states = st.lists(st.binary(max_size=60), max_size=3)


def cisco_attributes(h323: dict[str, tuple[str, bool]],
                     pairs: dict[str, str]) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """pyrad attributes for the generated VSAs, and the ``cisco`` dict decode must give."""
    attrs: list[tuple[str, Any]] = []
    expected: dict[str, str] = {}
    for name, (value, prefixed) in h323.items():
        assume(not value.startswith(name + "="))
        attrs.append((name, f"{name}={value}" if prefixed else value))
        expected[name] = value
    for key, value in pairs.items():
        attrs.append(("Cisco-AVPair", f"{key}={value}"))
        expected[key] = value
    return attrs, expected


# --- the dictionary -------------------------------------------------------------


def test_the_dictionary_is_read_once_and_has_the_cisco_voice_vsas() -> None:
    assert dictionary() is DICT
    assert DICT.vendors.GetForward("Cisco") == 9
    assert DICT["Cisco-AVPair"].code == 1 and DICT["Cisco-AVPair"].vendor == "Cisco"
    for name, code in H323.items():
        assert (DICT[name].code, DICT[name].vendor, DICT[name].type) == (code, "Cisco", "string")
    assert not DICT.skipped_attributes


@pytest.mark.parametrize(("name", "code", "kind"), [
    ("User-Name", 1, "string"), ("User-Password", 2, "string"), ("NAS-IP-Address", 4, "ipaddr"),
    ("Service-Type", 6, "integer"), ("Reply-Message", 18, "string"),
    ("Session-Timeout", 27, "integer"), ("Called-Station-Id", 30, "string"),
    ("Calling-Station-Id", 31, "string"), ("Proxy-State", 33, "octets"),
    ("Acct-Status-Type", 40, "integer"), ("Acct-Session-Id", 44, "string"),
    ("Acct-Session-Time", 46, "integer"), ("Acct-Terminate-Cause", 49, "integer"),
    ("Event-Timestamp", 55, "date"), ("NAS-Port-Type", 61, "integer"),
    ("Message-Authenticator", 80, "octets"), ("NAS-IPv6-Address", 95, "ipv6addr"),
])
def test_standard_attributes_have_their_rfc_numbers(name: str, code: int, kind: str) -> None:
    assert (DICT[name].code, DICT[name].type, DICT[name].vendor) == (code, kind, "")


@pytest.mark.parametrize(("name", "value", "number"), [
    ("Service-Type", "Framed-User", 2), ("Service-Type", "Call-Check", 10),
    ("Framed-Protocol", "PPP", 1), ("Acct-Status-Type", "Start", 1),
    ("Acct-Status-Type", "Stop", 2), ("Acct-Status-Type", "Interim-Update", 3),
    ("Acct-Status-Type", "Accounting-On", 7), ("Acct-Status-Type", "Accounting-Off", 8),
    ("Acct-Authentic", "RADIUS", 1), ("Acct-Authentic", "Remote", 3),
    ("Acct-Terminate-Cause", "User-Request", 1), ("Acct-Terminate-Cause", "Host-Request", 18),
    ("NAS-Port-Type", "Async", 0), ("NAS-Port-Type", "Virtual", 5),
    ("NAS-Port-Type", "Wireless-802.11", 19),
])
def test_values_have_their_rfc_numbers(name: str, value: str, number: int) -> None:
    assert DICT[name].values.GetForward(value) == struct.pack(">I", number)


FREERADIUS = Path("/usr/share/freeradius")


def test_the_dictionary_agrees_with_freeradius() -> None:
    ensure_radclient()          # its package brings FreeRADIUS's dictionaries (-common)
    theirs = Dictionary(*(str(FREERADIUS / f"dictionary.{n}")
                          for n in ("rfc2865", "rfc2866", "rfc2869", "rfc3162", "cisco")))
    checked = 0
    for name, ours in DICT.attributes.items():
        if name == "Vendor-Specific":           # "vsa" there, which pyrad cannot read
            continue
        other = theirs.attributes[name]
        assert (ours.code, ours.type, ours.vendor, ours.encrypt) == \
            (other.code, other.type, other.vendor, other.encrypt), name
        for value, raw in ours.values.forward.items():
            assert other.values.forward[value] == raw, (name, value)
        checked += 1
    assert checked == len(DICT.attributes) - 1


@FAST
@given(st.binary(max_size=300), st.binary(max_size=100))
@example(b"", b"")
@example(bytes(range(256)) * 3, bytes(range(64)))
@example(b"x" * 55, b"k" * 65)
def test_the_compiled_md5_and_hmac_are_hashlibs(message: bytes, key: bytes) -> None:
    # Every padding case: 55, 56 and 64 bytes cross the MD5 block and length boundaries,
    # keys over 64 bytes are hashed first.
    for cut in (message, message[:55], message[:56], message[:64]):
        assert _radius.md5(cut) == hashlib.md5(cut).digest()
        assert _radius.hmac_md5(key, cut) == hmac.digest(key, cut, "md5")


# --- decoding what pyrad builds --------------------------------------------------


@FAST
@given(ident=st.integers(0, 255), authenticator=st.binary(min_size=16, max_size=16),
       user_name=optional_text, password=st.none() | st.binary(max_size=128),
       calling=optional_text, called=optional_text,
       nas_ip=st.none() | st.ip_addresses(v=4).map(str), h323=h323_values, pairs=avpairs,
       signed=st.booleans(), proxy=proxy_states)
def test_access_requests_from_pyrad_decode_to_what_was_put_in(
        ident: int, authenticator: bytes, user_name: str | None, password: bytes | None,
        calling: str | None, called: str | None, nas_ip: str | None,
        h323: dict[str, tuple[str, bool]], pairs: dict[str, str], signed: bool,
        proxy: list[bytes]) -> None:
    attrs, cisco = cisco_attributes(h323, pairs)
    for name, value in (("User-Name", user_name), ("Calling-Station-Id", calling),
                        ("Called-Station-Id", called), ("NAS-IP-Address", nas_ip)):
        if value is not None:
            attrs.append((name, value))
    if not signed:
        proxy = []                        # dropped otherwise; tested below
    _, data = pyrad_access(attrs, password, proxy, ma=signed, ident=ident,
                           authenticator=authenticator)

    req = decode(data, SECRET, require_message_authenticator=signed)

    assert req == Request(
        code=ACCESS_REQUEST, identifier=ident, authenticator=authenticator,
        user_name=user_name,
        password=None if password is None else password.rstrip(b"\0").decode("utf-8", "replace"),
        calling=calling, called=called, nas_ip=nas_ip, session_id=None, status_type=None,
        session_time=None, event_time=None, message_authenticator=signed, proxy_state=proxy,
        cisco=cisco)
    if signed:
        assert reason(data, secret=SECRET + b"!") == "bad-message-authenticator"


@FAST
@given(ident=st.integers(0, 255),
       status=st.sampled_from([1, 2, 3, 7, 8, "Start", "Stop", "Interim-Update",
                               "Accounting-On", "Accounting-Off"]),
       session_id=optional_text, session_time=st.none() | st.integers(0, 2**32 - 1),
       event_time=st.none() | st.integers(0, 2**32 - 1), user_name=optional_text,
       calling=optional_text, called=optional_text,
       nas_ip=st.none() | st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(str),
       h323=h323_values, pairs=avpairs, signed=st.booleans(), proxy=proxy_states)
def test_accounting_requests_from_pyrad_decode_to_what_was_put_in(
        ident: int, status: int | str, session_id: str | None, session_time: int | None,
        event_time: int | None, user_name: str | None, calling: str | None,
        called: str | None, nas_ip: str | None, h323: dict[str, tuple[str, bool]],
        pairs: dict[str, str], signed: bool, proxy: list[bytes]) -> None:
    attrs, cisco = cisco_attributes(h323, pairs)
    attrs.append(("Acct-Status-Type", status))
    for name, value in (("Acct-Session-Id", session_id), ("Acct-Session-Time", session_time),
                        ("Event-Timestamp", event_time), ("User-Name", user_name),
                        ("Calling-Station-Id", calling), ("Called-Station-Id", called)):
        if value is not None:
            attrs.append((name, value))
    if nas_ip is not None:
        attrs.append(("NAS-IPv6-Address" if ":" in nas_ip else "NAS-IP-Address", nas_ip))
    pkt, data = pyrad_accounting(attrs, proxy, ma=signed, ident=ident)

    req = decode(data, SECRET)

    numbers = {"Start": 1, "Stop": 2, "Interim-Update": 3, "Accounting-On": 7,
               "Accounting-Off": 8}
    assert req == Request(
        code=ACCOUNTING_REQUEST, identifier=ident, authenticator=pkt.authenticator,
        user_name=user_name, password=None, calling=calling, called=called, nas_ip=nas_ip,
        session_id=session_id, status_type=numbers.get(str(status), status),
        session_time=session_time, event_time=event_time, message_authenticator=signed,
        proxy_state=proxy, cisco=cisco)
    assert reason(data, secret=SECRET + b"!") == "bad-authenticator"


def test_first_of_repeated_attributes_wins_and_repeats_of_proxy_state_are_all_kept() -> None:
    data = raw_accounting(attr(40, struct.pack(">I", 1)) + attr(40, struct.pack(">I", 2))
                          + attr(44, b"first") + attr(33, b"a") + attr(44, b"second")
                          + attr(33, b"b") + attr(33, b"a")
                          + vsa(9, (1, b"k=1"), (1, b"k=2"), (102, b"h323-credit-time=5"))
                          + vsa(9, (102, b"9"), (2, b"ignored"), (200, b"unknown")))
    req = decode(data, SECRET)
    assert (req.status_type, req.session_id) == (1, "first")
    assert req.proxy_state == [b"a", b"b", b"a"]
    assert req.cisco == {"k": "1", "h323-credit-time": "5"}


def test_nas_ip_address_is_preferred_to_nas_ipv6_address() -> None:
    v6 = attr(95, bytes.fromhex("20010db8000000000000000000000002"))
    v4 = attr(4, bytes((198, 51, 100, 1)))
    for both in (v6 + v4, v4 + v6):
        assert decode(raw_accounting(STATUS_START + both), SECRET).nas_ip == "198.51.100.1"
    assert decode(raw_accounting(STATUS_START + v6), SECRET).nas_ip == "2001:db8::2"


def test_only_a_prefix_of_the_attributes_own_name_is_removed() -> None:
    data = raw_accounting(attr(40, struct.pack(">I", 3)) + vsa(
        9, (24, b"h323-conf-id=h323-conf-id=x"), (30, b"h323-conf-id=10"),
        (25, b"H323-SETUP-TIME=1"), (1, b"no-equals-sign"), (1, b"=empty-key")))
    assert decode(data, SECRET).cisco == {
        "h323-conf-id": "h323-conf-id=x", "h323-disconnect-cause": "h323-conf-id=10",
        "h323-setup-time": "H323-SETUP-TIME=1", "no-equals-sign": "", "": "empty-key"}


def test_passwords_of_every_length_and_a_user_password_in_accounting_is_ignored() -> None:
    for size in (0, 1, 15, 16, 17, 31, 32, 100, 127, 128):
        secret = b"s" * size                 # secrets of any length hide alike
        pkt = pyrad_packet.AuthPacket(id=3, secret=secret, dict=DICT,
                                      authenticator=bytes(range(16, 32)))
        pkt["User-Password"] = pkt.PwCrypt(b"p" * size)
        pkt.add_message_authenticator()
        assert decode(pkt.RequestPacket(), secret).password == "p" * size
    pkt, data = pyrad_accounting([("Acct-Status-Type", 1), ("User-Password", "x" * 16)])
    assert decode(data, SECRET).password is None


def test_bytes_past_the_length_field_are_padding() -> None:
    _, data = pyrad_access([("User-Name", "alice")])
    assert decode(data + b"\x01\x40junk", SECRET) == decode(data, SECRET)
    _, data = pyrad_accounting([("Acct-Status-Type", 1), ("Acct-Session-Id", "s")])
    padded = data + bytes(MAX_PACKET - len(data))
    assert len(padded) == MAX_PACKET and decode(padded, SECRET) == decode(data, SECRET)


# --- encoding what pyrad reads -----------------------------------------------------

reply_attributes = st.fixed_dictionaries({
    "Session-Timeout": st.integers(0, 2**32 - 1),
    "h323-credit-time": st.integers(0, 10**7) | st.integers(0, 10**7).map(str),
    "h323-credit-amount": st.decimals(0, 10**6, places=2).map(str),
    "h323-currency": st.sampled_from(["EUR", "USD", "GBP"]),
    "h323-billing-model": st.sampled_from(["0", "1", "h323-billing-model=1"]),
    "h323-return-code": st.sampled_from(["0", "1", "13", "h323-return-code=2"]),
})


def pyrad_value(name: str, value: str | int) -> str | int:
    """What pyrad is given for the same attribute: h323 VSAs with the Cisco prefix written out."""
    if not name.startswith("h323-"):
        return value
    text = str(value)
    return text if text.startswith(name + "=") else f"{name}={text}"


@FAST
@given(ident=st.integers(0, 255), authenticator=st.binary(min_size=16, max_size=16),
       code=st.sampled_from([ACCESS_ACCEPT, ACCESS_REJECT]), attributes=reply_attributes,
       message=st.none() | st.text(max_size=400), proxy=proxy_states)
def test_access_replies_pass_pyrads_checks_and_equal_pyrads_bytes(
        ident: int, authenticator: bytes, code: int, attributes: dict[str, str | int],
        message: str | None, proxy: list[bytes]) -> None:
    request, data = pyrad_access([("User-Name", "alice")], proxy_state=proxy, ident=ident,
                                 authenticator=authenticator)
    pairs: list[tuple[str, str | int]] = list(attributes.items())
    if message is not None:
        pairs.insert(1, ("Reply-Message", message))

    out = encode_reply(decode(data, SECRET), code, SECRET, pairs)

    reply = request.CreateReply(packet=out)
    assert reply.code == code and reply.id == ident
    assert request.VerifyReply(reply, out, enforce_ma=True)
    assert not request.VerifyReply(reply, out[:-1] + bytes((out[-1] ^ 1,)))
    assert out[20:22] == b"\x50\x12"       # Message-Authenticator first
    assert reply.get("Proxy-State", []) == proxy
    for name, value in attributes.items():
        assert reply[name] == [pyrad_value(name, value)]
    if message is not None:
        pieces = reply["Reply-Message"]
        assert all(isinstance(p, str) and len(p.encode()) <= 253 for p in pieces)
        assert "".join(pieces) == message
        assert (len(pieces) == 1) == (len(message.encode()) <= 253)

    # pyrad builds the same reply from the same attributes, in the same order.
    same: dict[str, Any] = {}
    for name, value in pairs:
        same[name.replace("-", "_")] = (reply["Reply-Message"] if name == "Reply-Message"
                                        else pyrad_value(name, value))
    theirs = request.CreateReply(**same)
    theirs.code = code
    assert theirs.ReplyPacket() == out


@FAST
@given(ident=st.integers(0, 255), signed=st.booleans(), proxy=proxy_states)
def test_accounting_responses_pass_pyrads_checks_and_equal_pyrads_bytes(
        ident: int, signed: bool, proxy: list[bytes]) -> None:
    request, data = pyrad_accounting([("Acct-Status-Type", "Start"), ("Acct-Session-Id", "x")],
                                     proxy, ma=signed, ident=ident)

    out = encode_reply(decode(data, SECRET), ACCOUNTING_RESPONSE, SECRET, [])

    reply = request.CreateReply(packet=out)
    assert reply.code == ACCOUNTING_RESPONSE and reply.id == ident
    assert request.VerifyReply(reply, out)
    assert (out[20:22] == b"\x50\x12") == signed
    assert bool(reply.message_authenticator) == signed
    if signed:
        assert reply.verify_message_authenticator(original_authenticator=request.authenticator,
                                                  original_code=ACCOUNTING_REQUEST)
    assert reply.get("Proxy-State", []) == proxy
    theirs = request.CreateReply(message_authenticator=signed)
    assert theirs.ReplyPacket() == out


def test_integer_values_by_name_and_other_attribute_types() -> None:
    request, data = pyrad_access([("User-Name", "alice")])
    out = encode_reply(decode(data, SECRET), ACCESS_ACCEPT, SECRET, [
        ("Termination-Action", "RADIUS-Request"), ("Idle-Timeout", "600"),
        ("Framed-IP-Address", "198.51.100.7"), ("Class", b"\x00\xffbilling"),
        ("Filter-Id", 42), ("Login-IPv6-Host", "2001:db8::5"),
        ("Cisco-AVPair", "h323-ivr-out=credit:1")])
    reply = request.CreateReply(packet=out)
    assert request.VerifyReply(reply, out, enforce_ma=True)
    assert reply["Termination-Action"] == ["RADIUS-Request"]
    assert reply["Idle-Timeout"] == [600]
    assert reply["Framed-IP-Address"] == ["198.51.100.7"]
    assert reply["Class"] == [b"\x00\xffbilling"]
    assert reply["Filter-Id"] == ["42"]
    assert reply["Login-IPv6-Host"] == ["2001:db8::5"]
    assert reply["Cisco-AVPair"] == ["h323-ivr-out=credit:1"]   # no prefix of its own name


def test_a_long_reply_message_is_cut_between_characters() -> None:
    request, data = pyrad_access([("User-Name", "alice")])
    message = "€" * 300                               # 900 bytes, 3 per character
    out = encode_reply(decode(data, SECRET), ACCESS_REJECT, SECRET, [("Reply-Message", message)])
    pieces = request.CreateReply(packet=out)["Reply-Message"]
    assert [len(p) for p in pieces] == [84, 84, 84, 48]    # 252 bytes each, not 253
    assert "".join(pieces) == message


def test_bad_replies_are_refused() -> None:
    access = decode(pyrad_access([("User-Name", "alice")])[1], SECRET)
    accounting = decode(pyrad_accounting([("Acct-Status-Type", 1)])[1], SECRET)
    with pytest.raises(KeyError):
        encode_reply(access, ACCESS_ACCEPT, SECRET, [("No-Such-Attribute", 1)])
    for code, request in ((ACCOUNTING_RESPONSE, access), (ACCESS_ACCEPT, accounting),
                          (ACCESS_REJECT, accounting), (11, access), (ACCESS_REQUEST, access)):
        with pytest.raises(ValueError):
            encode_reply(request, code, SECRET, [])
    for bad in [("Session-Timeout", -1), ("Session-Timeout", 2**32), ("Session-Timeout", "1h"),
                ("Filter-Id", "x" * 254), ("h323-currency", "x" * 240),
                ("Framed-IP-Address", "300.1.1.1"), ("Framed-IP-Address", b"\x01\x02\x03\x04")]:
        with pytest.raises(ValueError):
            encode_reply(access, ACCESS_ACCEPT, SECRET, [bad])
    with pytest.raises(ValueError):
        encode_reply(access, ACCESS_ACCEPT, SECRET, [("Reply-Message", "x" * 4100)])
    assert encode_reply(access, ACCESS_ACCEPT, SECRET, [("Filter-Id", "x" * 253)])


# --- golden packets ---------------------------------------------------------------

GOLDEN_SECRET = b"testing123"

# Access-Request, id 42, Request Authenticator 0f1e2d...e1f0; Message-Authenticator
# first, User-Name "alice", User-Password "correct horse", Calling-Station-Id
# "+15551230001", Called-Station-Id "+442071234567", NAS-IP-Address 192.0.2.10,
# h323-conf-id "h323-conf-id=3C3F7B2A 11D1E6BA 8CA5DC4C 8F0A2B11".
GOLDEN_ACCESS = bytes.fromhex(
    "012a009a0f1e2d3c4b5a69788796a5b4c3d2e1f050129623a4bb92db249fa68c4857f56c5baa0107616c6963"
    "650212488c2af83ad66e4722dd8ba762d1115e1f0e2b31353535313233303030311e0f2b3434323037313233"
    "343536370406c000020a1a38000000091832683332332d636f6e662d69643d33433346374232412031314431"
    "45364241203843413544433443203846304132423131")

# The Access-Accept to it: Message-Authenticator, Session-Timeout 3600 and the
# Cisco VSAs h323-credit-time=3600, h323-credit-amount=12.50, h323-currency=EUR,
# h323-billing-model=1, h323-return-code=0.
GOLDEN_ACCEPT = bytes.fromhex(
    "022a00b8160a6e588d18804a1b72d802d7580ec750120631e357b05030b5ade648aeb67f376a1b0600000e10"
    "1a1d000000096617683332332d6372656469742d74696d653d333630301a2000000009651a683332332d6372"
    "656469742d616d6f756e743d31322e35301a19000000096e13683332332d63757272656e63793d4555521a1c"
    "000000096d16683332332d62696c6c696e672d6d6f64656c3d311a1a000000096714683332332d7265747572"
    "6e2d636f64653d30")

# Accounting-Request Stop, id 145, Message-Authenticator first; Acct-Session-Id
# "6E0A7F1C-00000001", Acct-Session-Time 125, Event-Timestamp 1700000000, User-Name,
# Calling/Called-Station-Id and NAS-IP-Address as above; h323-setup-time,
# h323-connect-time, h323-disconnect-cause=10, two Cisco-AVPairs, two Proxy-States.
GOLDEN_STOP = bytes.fromhex(
    "0491017bd18b390180864e26fa654ea6c6acb9e55012d857b64240442d6b42a30e380607dc9f280600000002"
    "2c1336453041374631432d30303030303030312e060000007d37066553f1000107616c6963651f0e2b313535"
    "35313233303030311e0f2b3434323037313233343536370406c000020a1a39000000091933683332332d7365"
    "7475702d74696d653d2a31343a34353a35392e31333120555443204d6f6e204a616e20313020323031311a3a"
    "000000091c34683332332d636f6e6e6563742d74696d653d31343a34363a30312e30303220555443204d6f6e"
    "204a616e20313020323031311a20000000091e1a683332332d646973636f6e6e6563742d63617573653d3130"
    "1a4100000009013b683332332d696e636f6d696e672d636f6e662d69643d3343334637423241203131443145"
    "3642412038434135444334432038463041324231311a1e00000009011873657373696f6e2d70726f746f636f"
    "6c3d7369707632210b010270726f78792d61210970726f78792d62")

# Its Accounting-Response: Message-Authenticator (the request had one), then the
# two Proxy-States in order.
GOLDEN_STOP_REPLY = bytes.fromhex(
    "0591003a772d94cd6cfcaad0c687db24c007483350128bf8ba9e01b61d6f3d6ae5e8bc8bbdcf210b01027072"
    "6f78792d61210970726f78792d62")

# Accounting-Request Start built by hand, id 7, no Message-Authenticator: one
# attribute 26 holding two Cisco VSAs (h323-setup-time, Cisco-AVPair call-id=...),
# a Microsoft (311) VSA to skip, NAS-IPv6-Address 2001:db8::1, User-Name "bob\xff"
# (not UTF-8), and two bytes of padding past the Length field.
GOLDEN_START = bytes.fromhex(
    "04070090df0e530b1ca17d66ae3eb6c2c94f7da02806000000012c06732d34321a4e00000009193168333233"
    "2d73657475702d74696d653d31303a30303a30302e3030302055544320547565204665622031203230323201"
    "1763616c6c2d69643d616263403139322e302e322e311a0a000001370104fffe5f1220010db8000000000000"
    "0000000000010106626f62ffdead")


def test_golden_access_request_and_its_accept() -> None:
    req = decode(GOLDEN_ACCESS, GOLDEN_SECRET)
    assert req == Request(
        code=1, identifier=42, authenticator=bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        user_name="alice", password="correct horse", calling="+15551230001",
        called="+442071234567", nas_ip="192.0.2.10", session_id=None, status_type=None,
        session_time=None, event_time=None, message_authenticator=True, proxy_state=[],
        cisco={"h323-conf-id": "3C3F7B2A 11D1E6BA 8CA5DC4C 8F0A2B11"})
    assert encode_reply(req, ACCESS_ACCEPT, GOLDEN_SECRET, [
        ("Session-Timeout", 3600), ("h323-credit-time", 3600), ("h323-credit-amount", "12.50"),
        ("h323-currency", "EUR"), ("h323-billing-model", "1"), ("h323-return-code", "0"),
    ]) == GOLDEN_ACCEPT


def test_golden_accounting_stop_and_its_response() -> None:
    req = decode(GOLDEN_STOP, GOLDEN_SECRET)
    assert req == Request(
        code=4, identifier=145, authenticator=bytes.fromhex("d18b390180864e26fa654ea6c6acb9e5"),
        user_name="alice", password=None, calling="+15551230001", called="+442071234567",
        nas_ip="192.0.2.10", session_id="6E0A7F1C-00000001", status_type=2, session_time=125,
        event_time=1700000000, message_authenticator=True,
        proxy_state=[b"\x01\x02proxy-a", b"proxy-b"],
        cisco={"h323-setup-time": "*14:45:59.131 UTC Mon Jan 10 2011",
               "h323-connect-time": "14:46:01.002 UTC Mon Jan 10 2011",
               "h323-disconnect-cause": "10",
               "h323-incoming-conf-id": "3C3F7B2A 11D1E6BA 8CA5DC4C 8F0A2B11",
               "session-protocol": "sipv2"})
    assert encode_reply(req, ACCOUNTING_RESPONSE, GOLDEN_SECRET, []) == GOLDEN_STOP_REPLY


def test_golden_hand_built_accounting_start() -> None:
    assert decode(GOLDEN_START, GOLDEN_SECRET) == Request(
        code=4, identifier=7, authenticator=bytes.fromhex("df0e530b1ca17d66ae3eb6c2c94f7da0"),
        user_name="bob\ufffd", password=None, calling=None, called=None, nas_ip="2001:db8::1",
        session_id="s-42", status_type=1, session_time=None, event_time=None,
        message_authenticator=False, proxy_state=[],
        cisco={"h323-setup-time": "10:00:00.000 UTC Tue Feb 1 2022", "call-id": "abc@192.0.2.1"})


# --- drop reasons -----------------------------------------------------------------

MA_ZEROED = attr(80, bytes(16))


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 0x01,)) + data[at + 1:]


def two_mas() -> bytes:
    data = raw_access(MA_ZEROED + attr(1, b"a") + MA_ZEROED)
    at = 20 + 18 + 3
    mac = hmac.digest(SECRET, data, "md5")
    return data[:22] + mac + data[38:at + 2] + mac + data[at + 18:]


def accounting_with_bad_ma() -> bytes:
    """A right Request Authenticator over a wrong Message-Authenticator."""
    _, data = pyrad_accounting([("Acct-Status-Type", 1)], ma=True)
    attrs = flip(data, 25)[20:]
    return raw_accounting(attrs)


DROPS: list[tuple[str, str, bytes, bool]] = [
    ("malformed", "19 bytes", raw_access(b"")[:19], False),
    ("malformed", "Length 19", raw_access(b"")[:2] + b"\x00\x13" + raw_access(b"")[4:], False),
    ("malformed", "Length past the data", raw_access(attr(1, b"ab"))[:-1], False),
    ("malformed", "attribute length 1", raw_access(b"\x01\x01\x00\x00"), False),
    ("malformed", "attribute length 0", raw_access(b"\x01\x00"), False),
    ("malformed", "attribute past Length", raw_access(b"\x01\x05ab") + b"x", False),
    ("malformed", "half an attribute header", raw_access(attr(1, b"a") + b"\x01"), False),
    ("malformed", "User-Password of 15 bytes", raw_access(attr(2, bytes(15))), False),
    ("malformed", "User-Password of 144 bytes", raw_access(attr(2, bytes(144))), False),
    ("malformed", "User-Password of 0 bytes", raw_access(attr(2, b"")), False),
    ("malformed", "NAS-IP-Address of 5 bytes", raw_access(attr(4, bytes(5))), False),
    ("malformed", "NAS-IPv6-Address of 4 bytes", raw_access(attr(95, bytes(4))), False),
    ("malformed", "Acct-Status-Type of 2 bytes", raw_accounting(attr(40, b"\x00\x01")), False),
    ("malformed", "Acct-Session-Time of 5 bytes",
     raw_accounting(STATUS_START + attr(46, bytes(5))), False),
    ("malformed", "Event-Timestamp of 0 bytes", raw_accounting(STATUS_START + attr(55, b"")),
     False),
    ("malformed", "Vendor-Specific without a vendor id", raw_accounting(attr(26, b"\0\0\0")),
     False),
    ("malformed", "Cisco VSA past its attribute",
     raw_accounting(attr(26, b"\0\0\0\x09\x1a\x09abc")), False),
    ("malformed", "Cisco VSA of length 1", raw_accounting(attr(26, b"\0\0\0\x09\x1a\x01")), False),
    ("malformed", "half a Cisco VSA header", raw_accounting(attr(26, b"\0\0\0\x09\x1a")), False),
    ("oversized", "4097 bytes", raw_access(b"") + bytes(MAX_PACKET + 1 - 20), False),
    ("oversized", "64 KiB", raw_access(attr(1, b"x")) + bytes(65536), True),
    ("unknown-code", "Access-Accept", raw_access(b"", code=ACCESS_ACCEPT), False),
    ("unknown-code", "Status-Server", sign_access(raw_access(MA_ZEROED, code=12)), False),
    ("unknown-code", "code 0", raw_access(b"", code=0), False),
    ("bad-authenticator", "flipped Request Authenticator", flip(raw_accounting(STATUS_START), 4),
     True),
    ("bad-authenticator", "other secret", raw_accounting(STATUS_START, secret=b"other"), True),
    ("bad-authenticator", "flipped attribute", flip(raw_accounting(STATUS_START), 25), True),
    ("no-message-authenticator", "none", raw_access(attr(1, b"alice")), True),
    ("bad-message-authenticator", "flipped", flip(sign_access(raw_access(MA_ZEROED)), 30), True),
    ("bad-message-authenticator", "other secret",
     sign_access(raw_access(MA_ZEROED + attr(1, b"a")), b"other"), True),
    ("bad-message-authenticator", "attribute changed after signing",
     flip(sign_access(raw_access(MA_ZEROED + attr(1, b"a"))), 40), False),
    ("bad-message-authenticator", "15 bytes", raw_access(attr(80, bytes(15))), False),
    ("bad-message-authenticator", "17 bytes", raw_access(attr(80, bytes(17))), False),
    ("bad-message-authenticator", "17 bytes, the first 16 of them right",
     raw_access(attr(80, hmac.digest(SECRET, raw_access(attr(80, bytes(17))), "md5") + b"\0")),
     False),
    ("bad-message-authenticator", "two of them", two_mas(), True),
    ("bad-message-authenticator", "accounting", accounting_with_bad_ma(), True),
    ("proxy-state-without-message-authenticator", "not required",
     raw_access(attr(1, b"a") + attr(33, b"x")), False),
    ("proxy-state-without-message-authenticator", "required",
     raw_access(attr(33, b"x")), True),
]


@pytest.mark.parametrize(("expected", "data", "require"),
                         [pytest.param(r, d, q, id=f"{r}: {what}") for r, what, d, q in DROPS])
def test_each_drop_reason(expected: str, data: bytes, require: bool) -> None:
    assert reason(data, require) == expected


def test_every_drop_reason_is_tested_and_the_tested_packets_are_otherwise_fine() -> None:
    assert {r for r, *_ in DROPS} == set(DROP_REASONS)
    # The same packets made right decode: each case breaks one rule only.
    assert decode(raw_access(b""), SECRET, False).code == ACCESS_REQUEST
    assert decode(raw_access(attr(1, b"ab")), SECRET, False).user_name == "ab"
    assert decode(raw_access(attr(2, bytes(16))), SECRET, False).password is not None
    assert decode(raw_access(attr(2, bytes(128))), SECRET, False).password is not None
    assert decode(raw_accounting(STATUS_START + attr(46, bytes(4))), SECRET).session_time == 0
    assert decode(raw_accounting(attr(26, b"\0\0\0\x09\x1a\x05abc")), SECRET).cisco \
        == {"h323-call-origin": "abc"}
    assert decode(sign_access(raw_access(MA_ZEROED + attr(33, b"x"))), SECRET).proxy_state \
        == [b"x"]
    assert decode(sign_access(raw_access(MA_ZEROED + attr(1, b"a"))), SECRET).user_name == "a"
    _, data = pyrad_accounting([("Acct-Status-Type", 1)], ma=True)
    assert decode(data, SECRET).message_authenticator
    assert decode(raw_access(attr(1, b"alice")), SECRET, False).user_name == "alice"


# --- fuzzing ------------------------------------------------------------------------


def decode_or_drop(data: bytes, require: bool = False) -> Request | None:
    """decode, with Dropped (of a known reason) as the only exception let through."""
    try:
        req = decode(data, SECRET, require)
    except Dropped as exc:
        assert exc.reason in DROP_REASONS
        return None
    assert req.code == data[0] and req.identifier == data[1]
    assert req.authenticator == data[4:20]
    return req


SEEDS = [
    GOLDEN_ACCESS, GOLDEN_STOP, GOLDEN_START,
    raw_access(attr(1, b"alice") + attr(2, bytes(32)) + attr(4, bytes(4)) + attr(95, bytes(16))
               + vsa(9, (1, b"a=b"), (102, b"h323-credit-time=1")) + attr(33, b"p")),
    raw_accounting(STATUS_START + attr(44, b"s") + attr(46, bytes(4)) + attr(55, bytes(4))
                   + vsa(9, (25, b"h323-setup-time=x"), (1, b"k=v")) + vsa(311, (1, b"z"))),
]


def resign(data: bytes) -> bytes:
    """Make a mutated Accounting-Request authentic again, so decoding reaches its fields."""
    if len(data) < 20 or data[0] != ACCOUNTING_REQUEST:
        return data
    length = min((data[2] << 8) | data[3], len(data))
    if length < 20:
        return data
    auth = hashlib.md5(data[:4] + bytes(16) + data[20:length] + SECRET).digest()
    return data[:4] + auth + data[20:]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["bit", "byte", "cut", "length", "attribute", "insert"]))
        if what == "bit" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif what == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif what == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif what == "length" and len(data) >= 4:
            data[2:4] = struct.pack(">H", draw(st.integers(0, 0xFFFF) | st.integers(0, 300)))
        elif what == "attribute" and len(data) > 21:
            # the length byte of one attribute, or of a VSA inside one
            at = draw(st.integers(20, len(data) - 1))
            data[at] = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7, 8, 18, 255]))
        elif what == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    out = bytes(data)
    return resign(out) if draw(st.booleans()) else out


@settings(max_examples=1500, deadline=None)
@given(data=mutated(), require=st.booleans())
@example(data=raw_access(b"\x50\x02"), require=True)           # a 0-byte Message-Authenticator
def test_mutated_packets_raise_only_dropped(data: bytes, require: bool) -> None:
    decode_or_drop(data, require)


@settings(max_examples=800, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_dropped(data: bytes) -> None:
    assert decode_or_drop(data) is None or len(data) >= 20


KNOWN_TYPES = st.sampled_from([1, 2, 4, 26, 30, 31, 33, 40, 44, 46, 55, 80, 95])
CISCO_OR_ANY = st.binary(max_size=40) | st.binary(max_size=40).map(b"\0\0\0\x09".__add__)


@settings(max_examples=800, deadline=None)
@given(code=st.sampled_from([ACCESS_REQUEST, ACCOUNTING_REQUEST]),
       attrs=st.lists(st.tuples(KNOWN_TYPES | st.integers(0, 255), CISCO_OR_ANY), max_size=8))
def test_well_framed_random_attributes_raise_only_dropped(
        code: int, attrs: list[tuple[int, bytes]]) -> None:
    body = b"".join(attr(kind, value[:253]) for kind, value in attrs)
    if code == ACCOUNTING_REQUEST:
        data = raw_accounting(body)
    else:
        data = sign_access(raw_access(body))
    req = decode_or_drop(data)
    if req is not None and 26 not in (kind for kind, _ in attrs):
        assert req.cisco == {}


# --- FreeRADIUS's radclient ----------------------------------------------------------


def answer(sock: socket.socket, stop: threading.Event, replies: list[bytes]) -> None:
    """Answer each datagram as the server would, until ``stop`` is set."""
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(MAX_PACKET + 1)
        except TimeoutError:
            continue
        try:
            req = decode(data, SECRET)
        except Dropped:
            continue
        if req.code == ACCESS_REQUEST:
            out = encode_reply(req, ACCESS_ACCEPT, SECRET, [
                ("Session-Timeout", 3600), ("h323-credit-time", 3600),
                ("h323-return-code", "0"), ("Reply-Message", "ok " + (req.password or ""))])
        else:
            out = encode_reply(req, ACCOUNTING_RESPONSE, SECRET, [])
        replies.append(out)
        sock.sendto(out, addr)


@pytest.mark.parametrize(("command", "lines", "expect"), [
    ("auth", ['User-Name = "alice"', 'User-Password = "correct horse"',
              'Calling-Station-Id = "+15551230001"', "Message-Authenticator = 0x00",
              'Proxy-State = 0x616263'],
     ["Received Access-Accept", "Session-Timeout = 3600",
      'h323-credit-time = "h323-credit-time=3600"', 'Reply-Message = "ok correct horse"']),
    ("acct", ['User-Name = "alice"', "Acct-Status-Type = Stop", 'Acct-Session-Id = "x1"',
              'h323-setup-time = "h323-setup-time=10:00:00.000 UTC Tue Feb 1 2022"'],
     ["Received Accounting-Response"]),
    ("acct", ["Message-Authenticator = 0x00", "Acct-Status-Type = Start", 'Acct-Session-Id = "x2"'],
     ["Received Accounting-Response", "Message-Authenticator = 0x"]),
])
def test_radclient_accepts_the_replies(tmp_path: Path, command: str, lines: list[str],
                                       expect: list[str]) -> None:
    radclient = ensure_radclient()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    replies: list[bytes] = []
    stop = threading.Event()
    thread = threading.Thread(target=answer, args=(sock, stop, replies), daemon=True)
    thread.start()
    request = tmp_path / "request"
    request.write_text("\n".join(lines) + "\n")
    try:
        proc = subprocess.run(
            [radclient, "-x", "-r", "1", "-t", "3", "-f", str(request),
             f"127.0.0.1:{sock.getsockname()[1]}", command, SECRET.decode()],
            capture_output=True, text=True, timeout=20)
    finally:
        stop.set()
        thread.join(5)
        sock.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(replies) == 1
    for line in expect:
        assert line in proc.stdout, proc.stdout
