"""Settings, each with its default written once, here.

The data directory comes from ``--data DIR``, else ``RATER_DATA``, else
``./rater-data``. Storage settings can be overridden from the environment
(``RATER_MAP_SIZE``, ``RATER_MAX_MAP_SIZE``, ``RATER_SYNC``); the service
configuration file comes with ``rater serve``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ConfigError

DEFAULT_DATA_DIR = "rater-data"
#: CDRs billed per write transaction by ``rater cdr import`` (``--chunk``).
CDR_CHUNK = 50_000


@dataclass(frozen=True)
class StorageConfig:
    #: Initial size of the LMDB map, in bytes. Address space only: the file
    #: grows as it is written, not to this size.
    map_size: int = 1 << 30
    #: The map doubles on demand up to this size; a write that needs more
    #: fails with STORE_FULL and changes nothing.
    max_map_size: int = 1 << 40
    #: fsync on every commit. Off, a power cut can lose the last commits
    #: (a killed process still loses nothing committed).
    sync: bool = True

    def __post_init__(self) -> None:
        if self.map_size < 1 << 16:
            raise ConfigError(f"storage.map_size: {self.map_size} is below 64 KiB")
        if self.max_map_size < self.map_size:
            raise ConfigError("storage.max_map_size: must be at least storage.map_size")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number of bytes") from None


def storage_from_env(base: StorageConfig | None = None) -> StorageConfig:
    """``base`` (or the defaults) with the RATER_* environment overrides applied."""
    cfg = base or StorageConfig()
    sync = os.environ.get("RATER_SYNC")
    if sync not in (None, "", "0", "1"):
        raise ConfigError(f"RATER_SYNC: {sync!r} must be 0 or 1")
    map_size = _env_int("RATER_MAP_SIZE", cfg.map_size)
    return replace(cfg, map_size=map_size,
                   max_map_size=_env_int("RATER_MAX_MAP_SIZE", max(map_size, cfg.max_map_size)),
                   sync=cfg.sync if not sync else sync == "1")


def data_dir(arg: str | os.PathLike[str] | None) -> Path:
    """The data directory: the argument, else RATER_DATA, else ./rater-data."""
    if arg:
        return Path(arg)
    env = os.environ.get("RATER_DATA")
    return Path(env) if env else Path(DEFAULT_DATA_DIR)
