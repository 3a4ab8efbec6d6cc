"""The compiled deck format: numpy dtypes of the C structs in ext/_engine.pxd.

A compiled deck is one little-endian blob::

    header (192 bytes: magic b"RATERDK\\0", format version, flags, counts, offsets)
    nodes     NODE_DTYPE[n_nodes]       breadth-first trie over the digits 0-9
    rows      ROW_DTYPE[n_rows]         grouped by prefix, in node order
    tiers     TIER_DTYPE[n_tiers]
    profiles  PROFILE_DTYPE[n_profiles]
    windows   WINDOW_DTYPE[n_windows]
    dates     int32[n_dates]            days since 1970-01-01, per profile sorted
    tz_at     int64[n_transitions]      UTC-offset changes of the table's zone
    tz_wall   int64[n_transitions]      wall time from which each change applies (fold=0)
    tz_offset int32[n_transitions + 1]
    dest_index uint32[n_destinations + 1], dest_bytes (UTF-8)

Each section starts on an 8-byte boundary. The engine checks the magic, the
version, the total size and every section's bounds when it opens a deck; the
compiler also runs the engine's full structural check before storing one.
"""

from __future__ import annotations

import numpy as np

MAGIC = b"RATERDK\0"
FORMAT_VERSION = 1
#: The format of a deck with FLAG_CUT, so that an engine reading format 1 only refuses it
#: rather than price it as a split deck.
FORMAT_VERSION_CUT = 2
FLAG_SPLIT = 1
FLAG_CUT = 2            # with FLAG_SPLIT: parts end where the row changes and at midnight
NODE_NROWS = 0x7FFF     # Node.nrows: how many rows the prefix has (the most it may have)
NODE_ALWAYS = 0x8000    # Node.nrows flag: its one row is in force at all times, any profile

HEADER_DTYPE = np.dtype([
    ("magic", "S8"), ("format_version", "<u4"), ("flags", "<u4"),
    ("total_size", "<u8"), ("denominator", "<i8"),
    ("n_nodes", "<u4"), ("n_rows", "<u4"), ("n_tiers", "<u4"), ("n_profiles", "<u4"),
    ("n_windows", "<u4"), ("n_dates", "<u4"), ("n_transitions", "<u4"),
    ("n_destinations", "<u4"),
    ("off_nodes", "<u8"), ("off_rows", "<u8"), ("off_tiers", "<u8"), ("off_profiles", "<u8"),
    ("off_windows", "<u8"), ("off_dates", "<u8"), ("off_tz_at", "<u8"), ("off_tz_wall", "<u8"),
    ("off_tz_offset", "<u8"), ("off_dest_index", "<u8"), ("off_dest_bytes", "<u8"),
    ("dest_bytes_size", "<u8"), ("n_prefixes", "<u4"), ("reserved0", "<u4"),
    ("reserved", "<u8", (3,)),
])

NODE_DTYPE = np.dtype([("mask", "<u2"), ("nrows", "<u2"), ("first_child", "<u4"), ("rows", "<u4")])

ROW_DTYPE = np.dtype([
    ("eff_from", "<i8"), ("eff_to", "<i8"), ("connect_fee", "<i8"), ("cap", "<i8"),
    ("rank", "<i8"), ("tier_start", "<u4"), ("dest", "<u4"), ("min_duration", "<i4"),
    ("grace", "<i4"), ("tier_count", "<u2"), ("profile", "<i2"), ("decimals", "u1"),
    ("method", "u1"), ("pad", "<u2"),
])

TIER_DTYPE = np.dtype([("price", "<i8"), ("from_s", "<i4"), ("increment", "<i4"),
                       ("unit", "<i4"), ("factor", "<i4")])

PROFILE_DTYPE = np.dtype([("days", "<u4"), ("win_start", "<u4"), ("win_count", "<u4"),
                          ("date_start", "<u4"), ("date_count", "<u4"), ("pad", "<u4")])

WINDOW_DTYPE = np.dtype([("start", "<i4"), ("end", "<i4")])

#: The structs whose layouts must match the engine's, by C name.
STRUCTS = {"DeckHeader": HEADER_DTYPE, "Node": NODE_DTYPE, "Row": ROW_DTYPE,
           "Tier": TIER_DTYPE, "Profile": PROFILE_DTYPE, "Window": WINDOW_DTYPE}


def pack(header: dict[str, int], sections: list[tuple[str, np.ndarray | bytes]]) -> bytes:
    """The blob of a header and its sections, each 8-byte aligned, offsets filled in."""
    head = np.zeros(1, HEADER_DTYPE)
    head["magic"] = MAGIC
    head["format_version"] = FORMAT_VERSION_CUT if header.get("flags", 0) & FLAG_CUT \
        else FORMAT_VERSION
    for k, v in header.items():
        head[k] = v
    parts: list[bytes] = []
    pos = HEADER_DTYPE.itemsize
    for name, data in sections:
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        head[f"off_{name}"] = pos
        parts.append(raw)
        pad = -len(raw) % 8
        parts.append(b"\0" * pad)
        pos += len(raw) + pad
    head["total_size"] = pos
    return head.tobytes() + b"".join(parts)
