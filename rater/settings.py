"""The ``rater serve`` configuration: TOML over the defaults in ``rater/serve.toml``.

Every key and its default is written, with what it does, in that one file. A
config file names only what it changes; ``--set SECTION.KEY=VALUE`` overrides
any key from the command line. Unknown keys and values of the wrong type are
errors that name the key (``rater config check FILE``).
"""

from __future__ import annotations

import copy
import ipaddress
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .config import StorageConfig
from .errors import ConfigError

NAS_KEYS = {"address": str, "secret": str, "name": str, "return_codes": dict}
OUTCOMES = ("accepted", "unknown_account", "bad_password", "capacity", "no_balance",
            "client_blocked", "no_rate", "call_ended")


@cache
def defaults_text() -> str:
    """The packaged ``serve.toml``: every setting, its default, what it does."""
    return resources.files("rater").joinpath("serve.toml").read_text()


@cache
def defaults() -> dict[str, Any]:
    return tomllib.loads(defaults_text())


@dataclass(frozen=True)
class NasEntry:
    """A NAS (a switch or gateway) allowed to send RADIUS, with its shared secret."""

    network: str
    secret: str
    name: str = ""
    #: Over the [radius.return_codes] table, for this NAS only.
    return_codes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MailSettings:
    """The SMTP server invoices are e-mailed through."""

    host: str
    port: int
    sender: str
    tls: str
    username: str
    password: str | None
    timeout: float


@dataclass(frozen=True)
class Settings:
    listen: str
    workers: int
    auth_port: int
    acct_port: int
    require_message_authenticator: bool
    reservation_grace: int
    return_codes: dict[str, int]
    storage: StorageConfig
    #: Group sync period of rater serve (0: fsync each commit).
    sync_interval_ms: int
    metrics_enabled: bool
    metrics_port: int
    grpc_enabled: bool
    grpc_port: int
    grpc_threads: int
    grpc_grace: int
    #: PEM certificate chain and private key of the gRPC agent (None: plaintext).
    grpc_tls: tuple[bytes, bytes] | None
    #: The bearer token gRPC calls must carry (None: none asked for).
    grpc_token: str | None
    nas: tuple[NasEntry, ...]
    mail: MailSettings
    #: The merged tree, as ``rater config show`` prints it.
    tree: dict[str, Any]


def _where(path: list[str]) -> str:
    return ".".join(path)


def _merge(base: dict[str, Any], over: dict[str, Any], path: list[str], source: str) -> None:
    for key, value in over.items():
        here = [*path, key]
        if key not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"{source}: unknown key {_where(here)}",
                              hint=f"known here: {known}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {_where(here)} is a table of settings")
            _merge(base[key], value, here, source)
            continue
        want = type(base[key])
        if (want is int and isinstance(value, bool)) or not isinstance(value, want):
            raise ConfigError(f"{source}: {_where(here)} = {value!r}: "
                              f"{want.__name__} expected")
        base[key] = value


def _parse_value(text: str) -> Any:
    """A --set value: TOML (numbers, true/false, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _nas_entries(items: Any, source: str) -> tuple[NasEntry, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{source}: nas must be an array of tables ([[nas]])")
    out = []
    for k, item in enumerate(items, 1):
        where = f"{source}: nas #{k}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: a table expected")
        for key, value in item.items():
            if key not in NAS_KEYS:
                raise ConfigError(f"{where}: unknown key nas.{key}",
                                  hint="known: " + ", ".join(NAS_KEYS))
            if not isinstance(value, NAS_KEYS[key]):
                raise ConfigError(f"{where}: nas.{key} = {value!r}: "
                                  f"{NAS_KEYS[key].__name__} expected")
        for key in ("address", "secret"):
            if key not in item:
                raise ConfigError(f"{where}: nas.{key} is needed")
        codes = item.get("return_codes", {})
        _check_codes(codes, f"{where}: nas.return_codes")
        out.append(NasEntry(network=nas_network(item["address"], where),
                            secret=nas_secret(item["secret"], where), name=item.get("name", ""),
                            return_codes=dict(codes)))
    networks = [e.network for e in out]
    for net in networks:
        if networks.count(net) > 1:
            raise ConfigError(f"{source}: nas {net} is listed twice")
    return tuple(out)


def nas_network(address: str, where: str = "nas") -> str:
    """An IP address or CIDR block in its canonical form (``10.0.0.0/8``, ``::1/128``)."""
    try:
        return str(ipaddress.ip_network(address.strip(), strict=False))
    except ValueError:
        raise ConfigError(f"{where}: {address!r} is not an IP address or CIDR block") from None


def nas_secret(secret: str, where: str = "nas") -> str:
    if not secret or len(secret.encode()) > 128:
        raise ConfigError(f"{where}: the secret must be 1 to 128 bytes")
    return secret


def _check_codes(codes: Any, where: str) -> None:
    if not isinstance(codes, dict):
        raise ConfigError(f"{where}: a table expected")
    for key, value in codes.items():
        if key not in OUTCOMES:
            raise ConfigError(f"{where}: unknown outcome {key}",
                              hint="known: " + ", ".join(OUTCOMES))
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 999:
            raise ConfigError(f"{where}.{key} = {value!r}: a code 0..999 expected")


def load(path: str | Path | None = None, overrides: dict[str, str] | None = None
         ) -> Settings:
    """The defaults, then the file at ``path``, then ``overrides`` (KEY -> text)."""
    tree = copy.deepcopy(defaults())
    nas: Any = []
    if path is not None:
        source = str(path)
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        try:
            given = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        nas = given.pop("nas", [])
        _merge(tree, given, [], source)
    for key, text in (overrides or {}).items():
        parts = key.split(".")
        value: Any = _parse_value(text)
        for part in reversed(parts):
            value = {part: value}
        _merge(tree, value, [], "--set")
    return _settings(tree, _nas_entries(nas, str(path)))


def _settings(tree: dict[str, Any], nas: tuple[NasEntry, ...]) -> Settings:
    serve, radius, storage = tree["serve"], tree["radius"], tree["storage"]
    metrics, rpc = tree["metrics"], tree["grpc"]
    try:
        ipaddress.ip_address(serve["listen"])
    except ValueError:
        raise ConfigError(f"serve.listen = {serve['listen']!r}: an IP address expected",
                          hint='"0.0.0.0" for every IPv4 address, "::" for IPv6') from None
    if not 1 <= serve["workers"] <= 256:
        raise ConfigError(f"serve.workers = {serve['workers']}: 1 to 256")
    for key in ("auth_port", "acct_port"):
        if not 0 <= radius[key] <= 65535:
            raise ConfigError(f"radius.{key} = {radius[key]}: a port 0..65535 expected")
    if radius["auth_port"] == radius["acct_port"] and radius["auth_port"]:
        raise ConfigError("radius.auth_port and radius.acct_port must differ")
    if not 0 <= rpc["port"] <= 65535:
        raise ConfigError(f"grpc.port = {rpc['port']}: a port 0..65535 expected")
    if not 1 <= rpc["threads"] <= 256:
        raise ConfigError(f"grpc.threads = {rpc['threads']}: 1 to 256")
    if not 0 <= rpc["grace_seconds"] <= 600:
        raise ConfigError(f"grpc.grace_seconds = {rpc['grace_seconds']}: 0 to 600")
    if rpc["enabled"] and metrics["enabled"] and rpc["port"] and rpc["port"] == metrics["port"]:
        raise ConfigError("grpc.port and metrics.port must differ")
    tls = None
    if rpc["tls_cert_file"] or rpc["tls_key_file"]:
        if not (rpc["tls_cert_file"] and rpc["tls_key_file"]):
            raise ConfigError("grpc.tls_cert_file and grpc.tls_key_file go together")
        pems = []
        for key in ("tls_cert_file", "tls_key_file"):
            try:
                pems.append(Path(rpc[key]).read_bytes())
            except OSError as exc:
                raise ConfigError(f"grpc.{key}: cannot read {rpc[key]}: {exc.strerror}"
                                  ) from None
            if b"-----BEGIN " not in pems[-1]:
                raise ConfigError(f"grpc.{key}: {rpc[key]} is not PEM")
        tls = (pems[0], pems[1])
    token = _secret(rpc, "grpc", "token_file")
    if token is not None and (len(token) < 16 or any(c.isspace() for c in token)):
        raise ConfigError("grpc.token_file: the token must be 16 or more characters, "
                          "without spaces")
    if not 0 <= metrics["port"] <= 65535:
        raise ConfigError(f"metrics.port = {metrics['port']}: a port 0..65535 expected")
    if metrics["enabled"] and metrics["port"] and metrics["port"] in (radius["auth_port"],
                                                                     radius["acct_port"]):
        raise ConfigError("metrics.port must differ from the RADIUS ports")
    if radius["reservation_grace"] < 0:
        raise ConfigError("radius.reservation_grace: 0 or more seconds")
    _check_codes(radius["return_codes"], "radius.return_codes")
    if not 0 <= storage["sync_interval_ms"] <= 1000:
        raise ConfigError(f"storage.sync_interval_ms = {storage['sync_interval_ms']}: "
                          f"0 to 1000")
    mail = _mail(tree["mail"])
    stored = StorageConfig(map_size=storage["map_size"], max_map_size=storage["max_map_size"],
                           sync=storage["sync"])
    return Settings(listen=serve["listen"], workers=serve["workers"],
                    auth_port=radius["auth_port"], acct_port=radius["acct_port"],
                    require_message_authenticator=radius["require_message_authenticator"],
                    reservation_grace=radius["reservation_grace"],
                    return_codes=dict(radius["return_codes"]), storage=stored,
                    sync_interval_ms=storage["sync_interval_ms"],
                    metrics_enabled=metrics["enabled"], metrics_port=metrics["port"],
                    grpc_enabled=rpc["enabled"], grpc_port=rpc["port"],
                    grpc_threads=rpc["threads"], grpc_grace=rpc["grace_seconds"],
                    grpc_tls=tls, grpc_token=token, nas=nas, mail=mail, tree=tree)


def _secret(section: dict[str, Any], name: str, key: str) -> str | None:
    """The secret in the file a setting names (surrounding space dropped); None: none."""
    if not section[key]:
        return None
    try:
        return Path(section[key]).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}.{key}: cannot read {section[key]}: {exc.strerror}"
                          ) from None


def _mail(mail: dict[str, Any]) -> MailSettings:
    if not 1 <= mail["port"] <= 65535:
        raise ConfigError(f"mail.port = {mail['port']}: a port 1..65535 expected")
    if mail["tls"] not in ("none", "starttls", "ssl"):
        raise ConfigError(f"mail.tls = {mail['tls']!r}: none, starttls or ssl")
    if not 0 < mail["timeout"] <= 600:
        raise ConfigError(f"mail.timeout = {mail['timeout']}: 1 to 600 seconds")
    if mail["from"] and "@" not in mail["from"]:
        raise ConfigError(f"mail.from = {mail['from']!r}: an e-mail address expected")
    password = _secret(mail, "mail", "password_file")
    if bool(mail["username"]) != (password is not None):
        raise ConfigError("mail.username and mail.password_file go together")
    return MailSettings(mail["host"], mail["port"], mail["from"], mail["tls"],
                        mail["username"], password, float(mail["timeout"]))
