# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""The compiled half of CDR import. Private: use :mod:`rater.ingest`.

Each function here does, for a whole column at a time, what rater.ingest
would otherwise do one CDR at a time in Python: split a canonical CDR file,
check a column of dialled numbers, build LMDB keys, pack msgpack records. Each
gives the same result as the Python it replaces (the tests compare them), and
anything it does not handle plainly it hands back (None) rather than guess.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

import numpy as np

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyUnicode_Check(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyErr_Occurred()
    bint PyLong_Check(object o)
    bint PyBool_Check(object o)
    bint PyBytes_Check(object o)
    bint PyList_CheckExact(object o)

cdef int64_t MAX_SECONDS = 0x7fffffff
cdef Py_ssize_t MAX_DIGITS = 32


# ---------------------------------------------------------------- canonical CDR files

ctypedef struct Buf:
    uint8_t* p
    Py_ssize_t n
    Py_ssize_t cap
    Py_ssize_t room     # kept free after a string for the rest of a row (pack_rows)


cdef int grow(Buf* b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap
    cdef uint8_t* p
    if b.n + more <= b.cap:
        return 0
    cap = max(b.cap * 2, b.n + more + 256)
    p = <uint8_t*>realloc(b.p, cap)
    if p is NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0



cdef inline bint odd_edge(uint8_t c) noexcept nogil:
    """A byte that str.strip() might remove or that may start/end a non-ASCII character."""
    return c >= 0x80 or (0x0b <= c <= 0x0d) or (0x1c <= c <= 0x1f)


cdef inline int two(const uint8_t* s) noexcept nogil:
    if s[0] < 48 or s[0] > 57 or s[1] < 48 or s[1] > 57:
        return -1
    return (s[0] - 48) * 10 + (s[1] - 48)


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t day) noexcept nogil:
    y -= m <= 2
    cdef int64_t era = y // 400          # y >= 0 here
    cdef int64_t yoe = y - era * 400
    cdef int64_t mp = m - 3 if m > 2 else m + 9
    cdef int64_t doy = (153 * mp + 2) // 5 + day - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int wall_seconds(const uint8_t* s, Py_ssize_t n, int64_t* out) noexcept nogil:
    """``YYYY-MM-DD HH:MM:SS`` (or with ``T``) exactly, as wall-clock seconds; -1 otherwise."""
    if n != 19 or s[4] != 45 or s[7] != 45 or (s[10] != 32 and s[10] != 84) \
            or s[13] != 58 or s[16] != 58:
        return -1
    cdef int c1 = two(s), c2 = two(s + 2), mo = two(s + 5), dy = two(s + 8)
    cdef int hh = two(s + 11), mi = two(s + 14), ss = two(s + 17)
    if c1 < 0 or c2 < 0 or mo < 1 or mo > 12 or dy < 1 or hh < 0 or hh > 23 \
            or mi < 0 or mi > 59 or ss < 0 or ss > 59:
        return -1
    cdef int64_t y = c1 * 100 + c2
    cdef int mdays = 31
    if y < 1970 or y > 2200:
        # outside what rater stores (the slow reader names it); from 1970 on no wall
        # is negative, so -1 can stand for a missing setup
        return -1
    if mo == 2:
        mdays = 29 if ((y % 4 == 0 and y % 100 != 0) or y % 400 == 0) else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        mdays = 30
    if dy > mdays:
        return -1
    out[0] = days_from_civil(y, mo, dy) * 86400 + hh * 3600 + mi * 60 + ss
    return 0


cdef inline void strip(const uint8_t** p, Py_ssize_t* n) noexcept nogil:
    while n[0] and (p[0][0] == 32 or p[0][0] == 9):
        p[0] += 1
        n[0] -= 1
    while n[0] and (p[0][n[0] - 1] == 32 or p[0][n[0] - 1] == 9):
        n[0] -= 1


cdef inline object text(const uint8_t* p, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")


def split_canonical(const uint8_t[::1] data, Py_ssize_t pos, int c_id, int c_start,
                    int c_number, int c_duration, int c_ip, int c_user, int c_ani,
                    int c_vendor, int c_setup):
    """The records of a canonical CDR file from ``pos`` on, as columns; None if any is unusual.

    Every line must be one record (no quotes, no carriage returns: the caller
    checks) with at least the named columns, a non-empty id, a start (and a setup,
    unless empty) of exactly ``YYYY-MM-DD HH:MM:SS`` and a duration of plain
    digits; any other line makes
    this return None, and the record-by-record reader names its problem. Text
    fields are stripped of spaces and tabs (a field with a non-ASCII character or
    another kind of space at an edge also returns None: str.strip() decides those).
    A column index of -1: not in the file.

    Returns ``(ids, walls, durations, numbers, ips, users, anis, vendors, setups, codes,
    identities)``: walls and setups are wall-clock seconds (int64; a setup of -1:
    none), ``codes[i]`` indexes
    ``identities``, the distinct (ip, username, ani) of the file, whose strings
    each record shares.
    """
    cdef Py_ssize_t end = data.shape[0]
    cdef const uint8_t* s = &data[0] if end else NULL
    cdef int width = max(c_id, c_start, c_number, c_duration, c_ip, c_user, c_ani, c_vendor,
                         c_setup) + 1
    cdef Py_ssize_t lines = 0, i = pos, a
    if width > 64:
        return None
    while i < end:
        if s[i] == 10:
            lines += 1
        i += 1
    if end > pos and s[end - 1] != 10:
        lines += 1
    walls_arr = np.empty(lines, np.int64)
    durations_arr = np.empty(lines, np.int64)
    codes_arr = np.empty(lines, np.int64)
    setups_arr = np.full(lines, -1, np.int64)
    cdef int64_t[::1] setups = setups_arr
    cdef int64_t[::1] walls = walls_arr
    cdef int64_t[::1] durations = durations_arr
    cdef int64_t[::1] codes = codes_arr
    ids = PyList_New(lines)
    numbers = PyList_New(lines)
    ips = PyList_New(lines)
    users = PyList_New(lines)
    anis = PyList_New(lines)
    vendors = PyList_New(lines)
    cdef PyObject* who_lists[3]
    who_lists[0] = <PyObject*>ips
    who_lists[1] = <PyObject*>users
    who_lists[2] = <PyObject*>anis
    cdef int texts[6]
    texts[:] = [c_id, c_number, c_ip, c_user, c_ani, c_vendor]
    cdef int who[3]
    who[:] = [c_ip, c_user, c_ani]
    cdef dict seen = {}
    cdef dict vendor_seen = {}
    cdef list identities = []
    cdef const uint8_t* fp[64]
    cdef Py_ssize_t fn[64]
    cdef int f, k, c
    cdef Py_ssize_t row = 0, m
    cdef int64_t v
    cdef const uint8_t* p
    cdef Py_ssize_t n
    cdef bytes key
    cdef PyObject* hit
    cdef object code, ident, obj
    cdef Buf kb
    kb.p = NULL
    kb.n = 0
    kb.cap = 0
    kb.room = 0
    try:
        i = pos
        while row < lines:
            # Split one line into its fields (the first 64 are kept).
            f = 0
            a = i
            while True:
                while i < end and s[i] != 44 and s[i] != 10:
                    i += 1
                if f < 64:
                    fp[f] = s + a
                    fn[f] = i - a
                f += 1
                if i < end and s[i] == 44:
                    i += 1
                    a = i
                    continue
                break
            if i < end:
                i += 1                               # the line end
            if f < width:
                return None
            for k in range(6):
                c = texts[k]
                if c >= 0:
                    p = fp[c]
                    n = fn[c]
                    strip(&p, &n)
                    if n and (odd_edge(p[0]) or odd_edge(p[n - 1])):
                        return None
            # id
            p = fp[c_id]
            n = fn[c_id]
            strip(&p, &n)
            if n == 0:
                return None
            obj = text(p, n)
            Py_INCREF(obj)
            PyList_SET_ITEM(ids, row, obj)
            # start, duration
            if wall_seconds(fp[c_start], fn[c_start], &walls[row]) < 0:
                return None
            if c_setup >= 0:
                p = fp[c_setup]
                n = fn[c_setup]
                strip(&p, &n)
                if n and wall_seconds(fp[c_setup], fn[c_setup], &setups[row]) < 0:
                    return None
            p = fp[c_duration]
            n = fn[c_duration]
            if n == 0 or n > 18:
                return None
            v = 0
            for m in range(n):
                if p[m] < 48 or p[m] > 57:
                    return None
                v = v * 10 + (p[m] - 48)
            if v > MAX_SECONDS:
                return None
            durations[row] = v
            # number
            p = fp[c_number]
            n = fn[c_number]
            strip(&p, &n)
            obj = text(p, n)
            Py_INCREF(obj)
            PyList_SET_ITEM(numbers, row, obj)
            # who: (ip, username, ani), each distinct one decoded once
            kb.n = 0
            for k in range(3):
                c = who[k]
                if c >= 0:
                    p = fp[c]
                    n = fn[c]
                    strip(&p, &n)
                    grow(&kb, n + 1)
                    memcpy(kb.p + kb.n, p, n)
                    kb.n += n
                grow(&kb, 1)
                kb.p[kb.n] = 0x1f
                kb.n += 1
            key = PyBytes_FromStringAndSize(<const char*>kb.p, kb.n)
            hit = PyDict_GetItem(seen, key)
            if hit is NULL:
                code = len(identities)
                ident = (_field(fp, fn, c_ip), _field(fp, fn, c_user), _field(fp, fn, c_ani))
                identities.append(ident)
                PyDict_SetItem(seen, key, code)
            else:
                code = <object>hit
                ident = identities[<Py_ssize_t>code]
            codes[row] = <int64_t>code
            for k in range(3):
                obj = <object>(<PyObject*>PyTuple_GET_ITEM(ident, k))
                Py_INCREF(obj)
                PyList_SET_ITEM(<object>who_lists[k], row, obj)
            # vendor
            if c_vendor < 0:
                obj = ""
            else:
                key = _raw(fp, fn, c_vendor)
                hit = PyDict_GetItem(vendor_seen, key)
                if hit is NULL:
                    obj = _field(fp, fn, c_vendor)
                    PyDict_SetItem(vendor_seen, key, obj)
                else:
                    obj = <object>hit
            Py_INCREF(obj)
            PyList_SET_ITEM(vendors, row, obj)
            row += 1
    finally:
        free(kb.p)
    return (ids, walls_arr, durations_arr, numbers, ips, users, anis, vendors, setups_arr,
            codes_arr, identities)


cdef inline bytes _raw(const uint8_t** fp, const Py_ssize_t* fn, int k):
    cdef const uint8_t* p = fp[k]
    cdef Py_ssize_t n = fn[k]
    strip(&p, &n)
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef inline str _field(const uint8_t** fp, const Py_ssize_t* fn, int k):
    if k < 0:
        return ""
    cdef const uint8_t* p = fp[k]
    cdef Py_ssize_t n = fn[k]
    strip(&p, &n)
    return text(p, n)


# ---------------------------------------------------------------- numbers

def plain_numbers(list numbers):
    """Which numbers are E.164 as they are (ASCII digits, at most 32, not ``00...``), and
    those numbers as ``+digits`` in a bytes array (``S33``; empty where not plain)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(numbers), i, j, size
    plain_arr = np.zeros(n, np.bool_)
    digits_arr = np.zeros(n, "S33")
    cdef uint8_t[::1] plain = plain_arr.view(np.uint8)
    cdef uint8_t[:, ::1] digits = digits_arr.view(np.uint8).reshape(n, 33)
    cdef const char* p
    cdef object num
    cdef bint ok
    for i in range(n):
        num = <object>PyList_GET_ITEM(numbers, i)
        if not PyUnicode_Check(num):
            continue
        try:
            p = PyUnicode_AsUTF8AndSize(num, &size)
        except UnicodeEncodeError:
            continue                    # a lone surrogate: not digits
        if size == 0 or size > MAX_DIGITS or (size >= 2 and p[0] == 48 and p[1] == 48):
            continue
        ok = True
        for j in range(size):
            if p[j] < 48 or p[j] > 57:
                ok = False
                break
        if ok:
            plain[i] = 1
            digits[i, 0] = 43
            memcpy(&digits[i, 1], p, size)
    return plain_arr, digits_arr


def heads(list texts, const int64_t[::1] lengths):
    """``texts[i][:lengths[i]]`` for each i ("" where the length is negative)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(texts), i
    out = PyList_New(n)
    cdef object empty = "", t
    for i in range(n):
        if lengths[i] < 0:
            t = empty
        else:
            t = (<object>PyList_GET_ITEM(texts, i))[:lengths[i]]
        Py_INCREF(t)
        PyList_SET_ITEM(out, i, t)
    return out


# ---------------------------------------------------------------- keys

cdef inline bytes utf8(object s):
    cdef Py_ssize_t size
    cdef const char* p
    try:
        p = PyUnicode_AsUTF8AndSize(s, &size)
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape")
    return PyBytes_FromStringAndSize(p, size)


def prefixed(bytes head, list texts):
    """``head`` followed by each text in UTF-8 (surrogate escapes as the bytes they were)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(texts), i, hn = PyBytes_GET_SIZE(head), size
    cdef bytes b, out
    out_list = PyList_New(n)
    for i in range(n):
        b = utf8(<object>PyList_GET_ITEM(texts, i))
        size = PyBytes_GET_SIZE(b)
        out = PyBytes_FromStringAndSize(NULL, hn + size)
        memcpy(PyBytes_AS_STRING(out), PyBytes_AS_STRING(head), hn)
        memcpy(PyBytes_AS_STRING(out) + hn, PyBytes_AS_STRING(b), size)
        Py_INCREF(out)
        PyList_SET_ITEM(out_list, i, out)
    return out_list


def numbered(bytes head, uint64_t first, Py_ssize_t n):
    """``head`` followed by first, first + 1, ... as 8 big-endian bytes."""
    cdef Py_ssize_t hn = PyBytes_GET_SIZE(head), i, k
    cdef uint64_t v
    cdef bytes out
    cdef char* o
    out_list = PyList_New(n)
    for i in range(n):
        out = PyBytes_FromStringAndSize(NULL, hn + 8)
        o = PyBytes_AS_STRING(out)
        memcpy(o, PyBytes_AS_STRING(head), hn)
        v = first + <uint64_t>i
        for k in range(8):
            o[hn + 7 - k] = <char>(v & 0xff)
            v >>= 8
        Py_INCREF(out)
        PyList_SET_ITEM(out_list, i, out)
    return out_list


# ---------------------------------------------------------------- msgpack rows

cdef inline void put_be(Buf* b, uint8_t tag, uint64_t v, int size) noexcept:
    b.p[b.n] = tag
    cdef int k
    for k in range(size):
        b.p[b.n + size - k] = <uint8_t>(v & 0xff)
        v >>= 8
    b.n += 1 + size


# The put_* functions but put_raw write into room the caller made: a row's fixed-size
# parts (at most 9 bytes a value) are made room for once, a string's bytes by put_raw.
DEF ROOM = 9

cdef inline void put_int(Buf* b, int64_t v) noexcept:
    if v >= 0:
        if v < 128:
            b.p[b.n] = <uint8_t>v
            b.n += 1
        elif v <= 0xff:
            put_be(b, 0xcc, v, 1)
        elif v <= 0xffff:
            put_be(b, 0xcd, v, 2)
        elif v <= 0xffffffff:
            put_be(b, 0xce, v, 4)
        else:
            put_be(b, 0xcf, v, 8)
    elif v >= -32:
        b.p[b.n] = <uint8_t>(v & 0xff)
        b.n += 1
    elif v >= -128:
        put_be(b, 0xd0, <uint64_t>v, 1)
    elif v >= -32768:
        put_be(b, 0xd1, <uint64_t>v, 2)
    elif v >= -2147483648:
        put_be(b, 0xd2, <uint64_t>v, 4)
    else:
        put_be(b, 0xd3, <uint64_t>v, 8)


cdef inline int put_raw(Buf* b, const char* p, Py_ssize_t size, bint binary) except -1:
    grow(b, size + 5 + b.room)
    if binary:
        if size <= 0xff:
            put_be(b, 0xc4, size, 1)
        elif size <= 0xffff:
            put_be(b, 0xc5, size, 2)
        else:
            put_be(b, 0xc6, size, 4)
    elif size < 32:
        b.p[b.n] = 0xa0 | <uint8_t>size
        b.n += 1
    elif size <= 0xff:
        put_be(b, 0xd9, size, 1)
    elif size <= 0xffff:
        put_be(b, 0xda, size, 2)
    else:
        put_be(b, 0xdb, size, 4)
    memcpy(b.p + b.n, p, size)
    b.n += size
    return 0


cdef inline int put_object(Buf* b, object o) except -1:
    cdef Py_ssize_t size
    cdef const char* p
    cdef int overflow = 0
    cdef long long v
    if o is None:
        b.p[b.n] = 0xc0
        b.n += 1
    elif PyUnicode_CheckExact(o):
        p = PyUnicode_AsUTF8AndSize(o, &size)
        put_raw(b, p, size, False)
    elif PyBool_Check(o):
        b.p[b.n] = 0xc3 if o is True else 0xc2
        b.n += 1
    elif PyLong_Check(o):
        v = PyLong_AsLongLongAndOverflow(o, &overflow)
        if overflow:
            raise OverflowError(f"{o} does not fit a signed 64-bit integer")
        if v == -1 and PyErr_Occurred():
            return -1
        put_int(b, v)
    elif PyUnicode_Check(o):
        p = PyUnicode_AsUTF8AndSize(o, &size)
        put_raw(b, p, size, False)
    elif PyBytes_Check(o):
        put_raw(b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o), True)
    else:
        raise TypeError(f"cannot pack {type(o).__name__}")
    return 0


cdef inline void put_array_head(Buf* b, Py_ssize_t count) noexcept:
    if count < 16:
        b.p[b.n] = 0x90 | <uint8_t>count
        b.n += 1
    elif count <= 0xffff:
        put_be(b, 0xdc, count, 2)
    else:
        put_be(b, 0xdd, count, 4)


# What pack_rows does for each value of a row, in order.
DEF HEAD = 0       # an array header of `count` items
DEF LIST = 1       # row i's item of a list
DEF INTS = 2       # row i's item of an int64 array
DEF SAME = 3       # the same value in every row

ctypedef struct Op:
    int kind
    Py_ssize_t count
    PyObject* obj
    const int64_t* ints


cdef void plan_ops(object columns, Py_ssize_t n, list ops, list keep) except *:
    ops.append((HEAD, len(columns), None))
    for c in columns:
        if isinstance(c, list):
            if len(c) != n:
                raise ValueError(f"a column of {len(c)} values for {n} rows")
            ops.append((LIST, 0, c))
        elif isinstance(c, np.ndarray):
            if c.dtype != np.int64 or c.ndim != 1 or c.shape[0] != n:
                raise ValueError("an int64 column of the rows' length is needed")
            c = np.ascontiguousarray(c)
            ops.append((INTS, 0, c))
        elif isinstance(c, tuple):
            plan_ops(c, n, ops, keep)
        else:
            ops.append((SAME, 0, c))
        keep.append(c)


def pack_rows(columns, Py_ssize_t n, rows=None):
    """Row i of the columns as a msgpack array, for each of the n rows (or each i of
    ``rows``, an int64 array).

    A column is a list (row i's value), an int64 numpy array, a tuple of columns
    (a nested array) or anything else (the same value in every row). Values are
    None, bool, int, str or bytes, packed as msgpack.Packer(use_bin_type=True)
    packs them.
    """
    cdef list planned = [], keep = []
    plan_ops(columns, n, planned, keep)
    cdef Py_ssize_t nops = len(planned), k, i, r
    cdef const int64_t[::1] chosen
    cdef Py_ssize_t count = n
    if rows is not None:
        chosen = np.ascontiguousarray(rows, dtype=np.int64)
        count = chosen.shape[0]
        for r in range(count):
            if chosen[r] < 0 or chosen[r] >= n:
                raise IndexError(f"row {chosen[r]} of {n}")
    cdef Op* ops = <Op*>malloc(nops * sizeof(Op))
    if ops is NULL:
        raise MemoryError()
    cdef int64_t[::1] view
    cdef Buf b
    b.p = NULL
    b.n = 0
    b.cap = 0
    b.room = nops * ROOM
    out = PyList_New(count)
    cdef bytes row
    cdef Op* op
    try:
        for k in range(nops):
            kind, items, obj = planned[k]
            ops[k].kind = kind
            ops[k].count = items
            ops[k].obj = <PyObject*>obj
            ops[k].ints = NULL
            if kind == INTS and n:
                view = obj
                ops[k].ints = &view[0]
        for r in range(count):
            i = r if rows is None else chosen[r]
            b.n = 0
            grow(&b, b.room)
            for k in range(nops):
                op = &ops[k]
                if op.kind == HEAD:
                    put_array_head(&b, op.count)
                elif op.kind == LIST:
                    put_object(&b, <object>PyList_GET_ITEM(<object>op.obj, i))
                elif op.kind == INTS:
                    put_int(&b, op.ints[i])
                else:
                    put_object(&b, <object>op.obj)
            row = PyBytes_FromStringAndSize(<const char*>b.p, b.n)
            Py_INCREF(row)
            PyList_SET_ITEM(out, r, row)
    finally:
        free(b.p)
        free(ops)
    return out
