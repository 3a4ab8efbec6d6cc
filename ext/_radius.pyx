# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""The compiled RADIUS codec. Private: use :mod:`rater.radius.packet`.

Decoding and encoding work on the bytes in C, with MD5 (RFC 1321) and
HMAC-MD5 (RFC 2104) of their own, so that one request costs its server a
microsecond or two rather than the tens a Python codec costs. pyrad is the
reference both are tested against, and hashlib and hmac the reference of the
hashes.
"""

import ipaddress
import math

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

cdef enum:
    PACKET_MAX = 4096
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    USER_NAME = 1
    USER_PASSWORD = 2
    NAS_IP_ADDRESS = 4
    REPLY_MESSAGE = 18
    VENDOR_SPECIFIC = 26
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    PROXY_STATE = 33
    ACCT_STATUS_TYPE = 40
    ACCT_DELAY_TIME = 41
    ACCT_SESSION_ID = 44
    ACCT_SESSION_TIME = 46
    EVENT_TIMESTAMP = 55
    MESSAGE_AUTHENTICATOR = 80
    NAS_IPV6_ADDRESS = 95
    CISCO = 9
    CISCO_AVPAIR = 1
    # Reply attribute kinds (rater.radius.packet._TYPES).
    K_STRING = 0
    K_OCTETS = 1
    K_INTEGER = 2
    K_IPADDR = 3

# Given by rater.radius.packet (setup): its Request and Dropped classes and its tables.
cdef object Request = None
cdef object Dropped = None
cdef dict ENCODERS = {}
cdef dict H323_BY_CODE = {}


def setup(request, dropped, encoders, h323_by_code):
    global Request, Dropped, ENCODERS, H323_BY_CODE
    Request, Dropped, ENCODERS, H323_BY_CODE = request, dropped, encoders, h323_by_code


# ---------------------------------------------------------------- MD5 and HMAC-MD5

cdef uint32_t K[64]
cdef int SHIFT[64]
for _i in range(64):
    # RFC 1321 §3.4: the integer part of 2**32 * abs(sin(i + 1)).
    K[_i] = <uint32_t>int(abs(math.sin(_i + 1)) * 4294967296.0)
    SHIFT[_i] = ((7, 12, 17, 22), (5, 9, 14, 20), (4, 11, 16, 23), (6, 10, 15, 21))[_i // 16][_i % 4]

ctypedef struct MD5:
    uint32_t h[4]
    uint64_t size
    unsigned char block[64]


cdef inline void md5_start(MD5* m) noexcept nogil:
    m.h[0] = 0x67452301
    m.h[1] = 0xefcdab89
    m.h[2] = 0x98badcfe
    m.h[3] = 0x10325476
    m.size = 0


cdef void md5_block(MD5* m, const unsigned char* p) noexcept nogil:
    cdef uint32_t w[16]
    cdef uint32_t a = m.h[0], b = m.h[1], c = m.h[2], d = m.h[3], f, t
    cdef int i, g
    for i in range(16):
        w[i] = (<uint32_t>p[4 * i] | (<uint32_t>p[4 * i + 1] << 8)
                | (<uint32_t>p[4 * i + 2] << 16) | (<uint32_t>p[4 * i + 3] << 24))
    for i in range(64):
        if i < 16:
            f = (b & c) | (~b & d)
            g = i
        elif i < 32:
            f = (d & b) | (~d & c)
            g = (5 * i + 1) & 15
        elif i < 48:
            f = b ^ c ^ d
            g = (3 * i + 5) & 15
        else:
            f = c ^ (b | ~d)
            g = (7 * i) & 15
        t = f + a + K[i] + w[g]
        a = d
        d = c
        c = b
        b = b + ((t << SHIFT[i]) | (t >> (32 - SHIFT[i])))
    m.h[0] += a
    m.h[1] += b
    m.h[2] += c
    m.h[3] += d


cdef void md5_update(MD5* m, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t have = <Py_ssize_t>(m.size & 63), take
    m.size += <uint64_t>n
    if have:
        take = 64 - have
        if take > n:
            take = n
        memcpy(&m.block[have], p, take)
        p += take
        n -= take
        if have + take < 64:
            return
        md5_block(m, m.block)
    while n >= 64:
        md5_block(m, p)
        p += 64
        n -= 64
    if n:
        memcpy(m.block, p, n)


cdef void md5_final(MD5* m, unsigned char* out) noexcept nogil:
    cdef uint64_t bits = m.size * 8
    cdef unsigned char tail[72]
    cdef Py_ssize_t have = <Py_ssize_t>(m.size & 63)
    cdef Py_ssize_t pad = (56 - have - 1) & 63
    cdef int i
    memset(tail, 0, sizeof(tail))
    tail[0] = 0x80
    for i in range(8):
        tail[1 + pad + i] = <unsigned char>(bits >> (8 * i))
    md5_update(m, tail, 1 + pad + 8)
    for i in range(4):
        out[4 * i] = <unsigned char>m.h[i]
        out[4 * i + 1] = <unsigned char>(m.h[i] >> 8)
        out[4 * i + 2] = <unsigned char>(m.h[i] >> 16)
        out[4 * i + 3] = <unsigned char>(m.h[i] >> 24)


ctypedef struct Pads:
    MD5 inner
    MD5 outer

# Secret -> the MD5 states after its HMAC pads (bytes of a Pads): a NAS secret is
# set up once, not per packet. Bounded: a flood of secrets cannot grow it for ever.
cdef dict PADS = {}


cdef const Pads* pads_of(bytes secret) except NULL:
    cdef object got = PADS.get(secret)
    cdef Pads pads
    cdef unsigned char key[64]
    cdef unsigned char ipad[64]
    cdef unsigned char opad[64]
    cdef MD5 m
    cdef Py_ssize_t n = PyBytes_GET_SIZE(secret)
    cdef int i
    if got is None:
        memset(key, 0, 64)
        if n > 64:
            md5_start(&m)
            md5_update(&m, <const unsigned char*>PyBytes_AS_STRING(secret), n)
            md5_final(&m, key)
        else:
            memcpy(key, PyBytes_AS_STRING(secret), n)
        for i in range(64):
            ipad[i] = key[i] ^ 0x36
            opad[i] = key[i] ^ 0x5C
        md5_start(&pads.inner)
        md5_update(&pads.inner, ipad, 64)
        md5_start(&pads.outer)
        md5_update(&pads.outer, opad, 64)
        if len(PADS) >= 4096:
            PADS.clear()
        got = PyBytes_FromStringAndSize(<char*>&pads, sizeof(Pads))
        PADS[secret] = got
    return <const Pads*>PyBytes_AS_STRING(got)


cdef void hmac_into(const Pads* pads, const unsigned char* p, Py_ssize_t n,
                    unsigned char* out) noexcept nogil:
    cdef MD5 m = pads.inner
    cdef unsigned char inner[16]
    md5_update(&m, p, n)
    md5_final(&m, inner)
    m = pads.outer
    md5_update(&m, inner, 16)
    md5_final(&m, out)


def md5(bytes data not None):
    """MD5 of ``data`` (the same as hashlib.md5(data).digest())."""
    cdef MD5 m
    cdef unsigned char out[16]
    md5_start(&m)
    md5_update(&m, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    md5_final(&m, out)
    return PyBytes_FromStringAndSize(<char*>out, 16)


def hmac_md5(bytes secret not None, bytes message not None):
    """HMAC-MD5 of ``message`` under ``secret`` (the same as hmac.digest(..., "md5"))."""
    cdef unsigned char out[16]
    hmac_into(pads_of(secret), <const unsigned char*>PyBytes_AS_STRING(message),
              PyBytes_GET_SIZE(message), out)
    return PyBytes_FromStringAndSize(<char*>out, 16)


cdef bint same16(const unsigned char* a, const unsigned char* b) noexcept nogil:
    """Whether two 16-byte values are equal, in a time that does not say where they differ."""
    cdef unsigned char diff = 0
    cdef int i
    for i in range(16):
        diff |= a[i] ^ b[i]
    return diff == 0


# ---------------------------------------------------------------- decoding

cdef inline str text(const unsigned char* p, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>p, n, "replace")


cdef inline uint32_t integer(const unsigned char* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8)
            | <uint32_t>p[3])


cdef bint kept(int kind) noexcept nogil:
    """The single-valued attributes read for Request's fields."""
    return (kind == USER_NAME or kind == USER_PASSWORD or kind == NAS_IP_ADDRESS
            or kind == CALLED_STATION_ID or kind == CALLING_STATION_ID
            or kind == ACCT_STATUS_TYPE or kind == ACCT_SESSION_ID
            or kind == ACCT_SESSION_TIME or kind == EVENT_TIMESTAMP
            or kind == NAS_IPV6_ADDRESS or kind == ACCT_DELAY_TIME)


def decode(bytes data not None, bytes secret not None, bint require_message_authenticator=True):
    """rater.radius.packet.decode, which documents it."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data), length, pos, end, ma_at = -1
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef int code, kind, i, found = 0
    cdef Py_ssize_t at, n
    # Offsets of the first occurrence of each kept attribute, in packet order.
    cdef Py_ssize_t first[256]
    cdef int order[16]
    cdef unsigned char signed[PACKET_MAX]
    cdef unsigned char digest[16]
    cdef MD5 m
    if size > PACKET_MAX:
        raise Dropped("oversized", f"{size} bytes, more than the {PACKET_MAX} RADIUS allows")
    if size < 20:
        raise Dropped("malformed", f"{size} bytes, shorter than the 20-byte header")
    code = p[0]
    length = (p[2] << 8) | p[3]
    if length < 20 or length > size:
        raise Dropped("malformed", f"Length field says {length} bytes, {size} received")
    if code != ACCESS_REQUEST and code != ACCOUNTING_REQUEST:
        raise Dropped("unknown-code", f"code {code} is neither Access- nor Accounting-Request")
    if length < size:
        # RFC 2865 §3: octets past Length are padding, not part of the packet.
        data = data[:length]
        p = <const unsigned char*>PyBytes_AS_STRING(data)

    for i in range(256):
        first[i] = -1
    proxy_state = []
    vsas = []
    pos = 20
    while pos < length:
        if pos + 1 == length:
            raise Dropped("malformed", f"attribute header cut short at offset {pos}")
        kind = p[pos]
        end = pos + p[pos + 1]
        if end < pos + 2 or end > length:
            raise Dropped("malformed", f"attribute {kind} at offset {pos} has length "
                                       f"{p[pos + 1]}, packet ends at {length}")
        if kept(kind):
            if first[kind] < 0:
                first[kind] = pos
                order[found] = kind
                found += 1
        elif kind == PROXY_STATE:
            proxy_state.append(data[pos + 2:end])
        elif kind == VENDOR_SPECIFIC:
            vsas.append(data[pos + 2:end])
        elif kind == MESSAGE_AUTHENTICATOR:
            if ma_at >= 0:
                raise Dropped("bad-message-authenticator", "more than one Message-Authenticator")
            ma_at = pos
        pos = end

    authenticator = data[4:20]
    if code == ACCESS_REQUEST:
        if ma_at >= 0:
            check_message_authenticator(p, length, ma_at, p + 4, secret, signed)
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
        memcpy(signed, p, length)
        memset(&signed[4], 0, 16)
        md5_start(&m)
        md5_update(&m, signed, length)
        md5_update(&m, <const unsigned char*>PyBytes_AS_STRING(secret),
                   PyBytes_GET_SIZE(secret))
        md5_final(&m, digest)
        if not same16(digest, p + 4):
            raise Dropped("bad-authenticator",
                          "Request Authenticator does not match the packet and secret")
        if ma_at >= 0:
            # Signed before the Request Authenticator existed, so over zeros in
            # its place (FreeRADIUS and pyrad do the same).
            memset(digest, 0, 16)
            check_message_authenticator(p, length, ma_at, digest, secret, signed)

    user_name = password = calling = called = nas_ip = session_id = None
    status_type = session_time = event_time = delay_time = None
    for i in range(found):
        kind = order[i]
        at = first[kind] + 2
        n = p[first[kind] + 1] - 2
        if kind == USER_NAME:
            user_name = text(p + at, n)
        elif kind == CALLING_STATION_ID:
            calling = text(p + at, n)
        elif kind == CALLED_STATION_ID:
            called = text(p + at, n)
        elif kind == ACCT_SESSION_ID:
            session_id = text(p + at, n)
        elif kind == USER_PASSWORD:
            # Hidden with the Request Authenticator, which only an
            # Access-Request has; RFC 2866 keeps it out of accounting.
            if code == ACCESS_REQUEST:
                password = unhide_password(p + at, n, p + 4, secret)
        elif kind == NAS_IP_ADDRESS:
            if n != 4:
                raise Dropped("malformed", f"NAS-IP-Address of {n} bytes, not 4")
            nas_ip = f"{p[at]}.{p[at + 1]}.{p[at + 2]}.{p[at + 3]}"
        elif kind == NAS_IPV6_ADDRESS:
            if n != 16:
                raise Dropped("malformed", f"NAS-IPv6-Address of {n} bytes, not 16")
            if first[NAS_IP_ADDRESS] < 0:
                nas_ip = str(ipaddress.IPv6Address(data[at:at + 16]))
        else:
            if n != 4:
                raise Dropped("malformed", f"attribute {kind} is an integer of {n} "
                                           "bytes, not 4")
            number = integer(p + at)
            if kind == ACCT_STATUS_TYPE:
                status_type = number
            elif kind == ACCT_SESSION_TIME:
                session_time = number
            elif kind == ACCT_DELAY_TIME:
                delay_time = number
            else:
                event_time = number

    return Request(code, p[1], authenticator, user_name, password, calling, called, nas_ip,
                   session_id, status_type, session_time, event_time, ma_at >= 0, proxy_state,
                   cisco_attributes(vsas) if vsas else {}, delay_time)


cdef int check_message_authenticator(const unsigned char* p, Py_ssize_t length,
                                     Py_ssize_t at, const unsigned char* vector,
                                     bytes secret, unsigned char* signed) except -1:
    # ``signed``: room for the packet as signed; ``vector`` must not point into it.
    """Drop the packet unless the Message-Authenticator at offset ``at`` is right.

    The HMAC-MD5 covers the packet with ``vector`` in the Authenticator field
    and the Message-Authenticator value zeroed (RFC 3579 §3.2).
    """
    cdef unsigned char mac[16]
    if p[at + 1] != 18:
        raise Dropped("bad-message-authenticator",
                      f"Message-Authenticator of {p[at + 1] - 2} bytes, not 16")
    memcpy(signed, p, length)
    memcpy(&signed[4], vector, 16)
    memset(&signed[at + 2], 0, 16)
    hmac_into(pads_of(secret), signed, length, mac)
    if not same16(mac, p + at + 2):
        raise Dropped("bad-message-authenticator",
                      "Message-Authenticator does not match the packet and secret")
    return 0


cdef str unhide_password(const unsigned char* hidden, Py_ssize_t size,
                         const unsigned char* authenticator, bytes secret):
    """Reverse the User-Password hiding of RFC 2865 §5.2."""
    cdef unsigned char plain[128]
    cdef unsigned char pad[16]
    cdef const unsigned char* chain = authenticator
    cdef Py_ssize_t at, n
    cdef int i
    cdef MD5 m
    if size < 16 or size > 128 or size % 16:
        raise Dropped("malformed",
                      f"User-Password of {size} bytes, not 16..128 in steps of 16")
    for at in range(0, size, 16):
        md5_start(&m)
        md5_update(&m, <const unsigned char*>PyBytes_AS_STRING(secret),
                   PyBytes_GET_SIZE(secret))
        md5_update(&m, chain, 16)
        md5_final(&m, pad)
        for i in range(16):
            plain[at + i] = pad[i] ^ hidden[at + i]
        chain = hidden + at
    # The client pads with NULs to a multiple of 16; they are not the password.
    n = size
    while n and plain[n - 1] == 0:
        n -= 1
    return text(plain, n)


cdef dict cisco_attributes(list vsas):
    """The h323-* VSAs and Cisco-AVPairs among the Vendor-Specific attributes."""
    cdef dict cisco = {}
    cdef bytes vsa
    cdef const unsigned char* v
    cdef Py_ssize_t size, pos, end
    cdef int sub
    for vsa in vsas:
        size = PyBytes_GET_SIZE(vsa)
        v = <const unsigned char*>PyBytes_AS_STRING(vsa)
        if size < 4:
            raise Dropped("malformed", f"Vendor-Specific of {size} bytes has no vendor id")
        if integer(v) != CISCO:
            continue
        # RFC 2865 §5.26 layout; one attribute 26 may hold several of them.
        pos = 4
        while pos < size:
            if pos + 1 == size:
                raise Dropped("malformed", "Cisco VSA header cut short")
            sub = v[pos]
            end = pos + v[pos + 1]
            if end < pos + 2 or end > size:
                raise Dropped("malformed", f"Cisco VSA {sub} has length {v[pos + 1]}, "
                                           f"{size - pos} bytes left")
            if sub == CISCO_AVPAIR:
                key, _, value = text(v + pos + 2, end - pos - 2).partition("=")
                cisco.setdefault(key, value)
            else:
                named = H323_BY_CODE.get(sub)
                if named is not None:
                    name, prefix = named
                    cisco.setdefault(name, text(v + pos + 2, end - pos - 2).removeprefix(prefix))
            pos = end
    return cisco


# ---------------------------------------------------------------- encoding

ctypedef struct Reply:
    # A reply being written: its bytes so far (as many as fit) and its full length.
    unsigned char buf[PACKET_MAX]
    Py_ssize_t length


cdef inline void put(Reply* r, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    if r.length + n <= PACKET_MAX:
        memcpy(&r.buf[r.length], p, n)
    r.length += n


cdef inline void byte(Reply* r, unsigned char b) noexcept nogil:
    if r.length < PACKET_MAX:
        r.buf[r.length] = b
    r.length += 1


cdef inline void u32(Reply* r, uint32_t v) noexcept nogil:
    byte(r, <unsigned char>(v >> 24))
    byte(r, <unsigned char>(v >> 16))
    byte(r, <unsigned char>(v >> 8))
    byte(r, <unsigned char>v)


cdef inline void raw_bytes(Reply* r, bytes b) noexcept:
    put(r, <const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


def encode_reply(request, int code, bytes secret not None, attributes):
    """rater.radius.packet.encode_reply, which documents it."""
    cdef bint signed
    cdef Reply reply
    cdef Reply* out = &reply
    cdef int kind, number
    cdef uint32_t vendor
    cdef long long value_int
    cdef Py_ssize_t n
    cdef const char* s
    cdef unsigned char mac[16]
    cdef unsigned char zero[16]
    cdef MD5 m
    cdef bytes vector, authenticator = request.authenticator
    if authenticator is None or PyBytes_GET_SIZE(authenticator) != 16:
        raise ValueError("the request's authenticator is not 16 bytes")
    memset(zero, 0, 16)
    if code == ACCESS_ACCEPT or code == ACCESS_REJECT:
        if request.code != ACCESS_REQUEST:
            raise ValueError(f"reply code {code} does not answer request code {request.code}")
        signed = True
        vector = authenticator
    elif code == ACCOUNTING_RESPONSE:
        if request.code != ACCOUNTING_REQUEST:
            raise ValueError(f"reply code {code} does not answer request code {request.code}")
        signed = request.message_authenticator
        # FreeRADIUS and pyrad sign an Accounting-Response over zeros.
        vector = bytes(16)
    else:
        raise ValueError(f"cannot encode a reply with code {code}")

    out.length = 20
    if signed:
        byte(out, MESSAGE_AUTHENTICATOR)
        byte(out, 18)
        put(out, zero, 16)
    for name, value in attributes:
        kind, number, vendor, prefix, named = ENCODERS[name]
        if kind == K_INTEGER:
            if not isinstance(value, int):
                value = integer_value(name, value, named)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name} = {value} does not fit 32 bits")
            if vendor:
                byte(out, 26)
                byte(out, 12)
                u32(out, vendor)
                byte(out, number)
                byte(out, 6)
            else:
                byte(out, number)
                byte(out, 6)
            u32(out, <uint32_t>value)
            continue
        if kind == K_STRING and isinstance(value, str):
            if prefix and not value.startswith(prefix):
                value = prefix + value
            raw = (<str>value).encode()
        else:
            raw = value_bytes(name, kind, prefix, value)
        n = PyBytes_GET_SIZE(raw)
        if vendor:
            if n > 247:
                raise ValueError(f"{name} value of {n} bytes, at most 247 fit")
            byte(out, 26)
            byte(out, <unsigned char>(n + 8))
            u32(out, vendor)
            byte(out, number)
            byte(out, <unsigned char>(n + 2))
            raw_bytes(out, raw)
        elif n <= 253:
            byte(out, number)
            byte(out, <unsigned char>(n + 2))
            raw_bytes(out, raw)
        elif number == REPLY_MESSAGE:
            for chunk in split_text(raw):
                byte(out, number)
                byte(out, <unsigned char>(len(chunk) + 2))
                raw_bytes(out, chunk)
        else:
            raise ValueError(f"{name} value of {n} bytes, at most 253 fit")
    for state in request.proxy_state:
        if len(state) > 253:
            raise ValueError(f"Proxy-State of {len(state)} bytes, at most 253 fit")
        byte(out, PROXY_STATE)
        byte(out, <unsigned char>(len(state) + 2))
        raw_bytes(out, state)

    if out.length > PACKET_MAX:
        raise ValueError(f"reply of {out.length} bytes, more than {PACKET_MAX}")
    out.buf[0] = <unsigned char>code
    out.buf[1] = <unsigned char>request.identifier
    out.buf[2] = <unsigned char>(out.length >> 8)
    out.buf[3] = <unsigned char>out.length
    if signed:
        memcpy(&out.buf[4], PyBytes_AS_STRING(vector), 16)
        hmac_into(pads_of(secret), out.buf, out.length, mac)
        memcpy(&out.buf[22], mac, 16)
    memcpy(&out.buf[4], PyBytes_AS_STRING(authenticator), 16)
    md5_start(&m)
    md5_update(&m, out.buf, out.length)
    md5_update(&m, <const unsigned char*>PyBytes_AS_STRING(secret), PyBytes_GET_SIZE(secret))
    md5_final(&m, &out.buf[4])
    return PyBytes_FromStringAndSize(<char*>out.buf, out.length)


cdef object integer_value(str name, object value, dict named):
    if isinstance(value, str):
        number = named.get(value)
        if number is not None:
            return number
        if value.isascii() and value.isdigit():
            return int(value)
    raise ValueError(f"{name} takes an integer or one of its value names, not {value!r}")


cdef bytes value_bytes(str name, int kind, str prefix, object value):
    """The bytes of a string, octets or address value."""
    if kind == K_STRING or kind == K_OCTETS:
        if isinstance(value, bytes):
            return value
        text = str(value)
        if prefix and not text.startswith(prefix):
            text = prefix + text
        return text.encode("utf-8")
    if isinstance(value, bytes):
        raise ValueError(f"{name} takes an address, not bytes")
    try:
        if kind == K_IPADDR:
            return ipaddress.IPv4Address(value).packed
        return ipaddress.IPv6Address(value).packed
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


cdef list split_text(bytes raw):
    """Cut UTF-8 text into pieces of at most 253 bytes, not inside a character."""
    pieces = []
    cdef Py_ssize_t cut
    while len(raw) > 253:
        cut = 253
        # Back off continuation bytes (10xxxxxx) so that every piece decodes.
        while cut > 250 and raw[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(raw[:cut])
        raw = raw[cut:]
    pieces.append(raw)
    return pieces


# ---------------------------------------------------------------- batches of datagrams

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr* msgs, unsigned int n, int flags, void* timeout)
    int sendmmsg(int fd, mmsghdr* msgs, unsigned int n, int flags)
    int AF_INET
    int AF_INET6
    int MSG_DONTWAIT

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        in_addr sin_addr
    struct sockaddr_in6:
        in6_addr sin6_addr

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN
    int EWOULDBLOCK
    int EINTR
    int ECONNREFUSED

cdef enum:
    BATCH_MAX = 64
    # Larger than RADIUS allows, so that an oversized packet is seen as one.
    DATAGRAM = PACKET_MAX + 1


cdef class Datagrams:
    """Buffers for taking and sending up to BATCH_MAX datagrams in one system call."""
    cdef unsigned char data[BATCH_MAX][DATAGRAM]
    cdef sockaddr_storage names[BATCH_MAX]
    cdef iovec iov[BATCH_MAX]
    cdef mmsghdr msgs[BATCH_MAX]

    def receive(self, int fd, int most):
        """Up to ``most`` waiting datagrams of the (non-blocking) socket ``fd``, as
        (data, source address, reply address) triples; the reply address is opaque,
        for :meth:`send`. An empty list when none waits."""
        cdef int i, got
        cdef char text[64]
        cdef const void* where
        if most > BATCH_MAX:
            most = BATCH_MAX
        if most < 1:
            return []
        for i in range(most):
            self.iov[i].iov_base = self.data[i]
            self.iov[i].iov_len = DATAGRAM
            memset(&self.msgs[i], 0, sizeof(mmsghdr))
            self.msgs[i].msg_hdr.msg_name = &self.names[i]
            self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            self.msgs[i].msg_hdr.msg_iov = &self.iov[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
        with nogil:
            got = recvmmsg(fd, self.msgs, most, MSG_DONTWAIT, NULL)
        if got < 0:
            if errno == EAGAIN or errno == EWOULDBLOCK or errno == EINTR \
                    or errno == ECONNREFUSED:
                return []
            raise OSError(errno, "recvmmsg failed")
        out = []
        for i in range(got):
            if self.names[i].ss_family == AF_INET:
                where = &(<sockaddr_in*>&self.names[i]).sin_addr
            else:
                where = &(<sockaddr_in6*>&self.names[i]).sin6_addr
            if inet_ntop(self.names[i].ss_family, where, text, sizeof(text)) == NULL:
                text[0] = 0
            out.append((PyBytes_FromStringAndSize(<char*>self.data[i], self.msgs[i].msg_len),
                        text.decode("ascii"),
                        PyBytes_FromStringAndSize(<char*>&self.names[i],
                                                  self.msgs[i].msg_hdr.msg_namelen)))
        return out

    def send(self, int fd, replies):
        """Send (data, reply address) pairs from ``fd`` (a datagram the kernel refuses
        is skipped, as a lost reply is: the NAS asks again)."""
        cdef int n = 0
        cdef bytes data, name
        for data, name in replies:
            if data is None or name is None:
                continue
            if n == BATCH_MAX:
                self._send(fd, n)
                n = 0
            if PyBytes_GET_SIZE(data) > DATAGRAM or PyBytes_GET_SIZE(name) > sizeof(sockaddr_storage):
                continue
            memcpy(self.data[n], PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            memcpy(&self.names[n], PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
            self.iov[n].iov_base = self.data[n]
            self.iov[n].iov_len = PyBytes_GET_SIZE(data)
            memset(&self.msgs[n], 0, sizeof(mmsghdr))
            self.msgs[n].msg_hdr.msg_name = &self.names[n]
            self.msgs[n].msg_hdr.msg_namelen = <socklen_t>PyBytes_GET_SIZE(name)
            self.msgs[n].msg_hdr.msg_iov = &self.iov[n]
            self.msgs[n].msg_hdr.msg_iovlen = 1
            n += 1
        if n:
            self._send(fd, n)

    cdef void _send(self, int fd, int n) noexcept:
        cdef int at = 0, done
        while at < n:
            with nogil:
                done = sendmmsg(fd, &self.msgs[at], n - at, MSG_DONTWAIT)
            if done < 0:
                if errno == EINTR:
                    continue
                at += 1             # this one refused: skip it, send the rest
                continue
            if done == 0:
                break
            at += done
