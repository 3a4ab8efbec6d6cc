"""The ``rater`` commands of the service: ``serve``, ``config check|show`` and ``nas``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .cli import _open, _print_json, _table
from .config import data_dir
from .errors import InvalidArgument


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"--set {item!r}: SECTION.KEY=VALUE expected")
        out[key.strip()] = value.strip()
    for flag, key in (("listen", "serve.listen"), ("workers", "serve.workers"),
                      ("radius_auth_port", "radius.auth_port"),
                      ("radius_acct_port", "radius.acct_port"),
                      ("metrics_port", "metrics.port"), ("grpc_port", "grpc.port")):
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = json.dumps(value)
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    from .radius.server import serve, setup_logging
    from .settings import load

    setup_logging(args.debug)
    overrides = _overrides(args)
    settings = load(args.config, overrides)
    return serve(settings, data_dir(args.data), args.config, overrides)


def cmd_config_check(args: argparse.Namespace) -> int:
    from .settings import load

    settings = load(args.file, _overrides(args))
    print(f"{args.file}: good ({settings.workers} workers; RADIUS {settings.auth_port}/"
          f"{settings.acct_port}; {len(settings.nas)} NAS entries)")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from . import nas
    from .settings import defaults_text, load

    if args.defaults:
        print(defaults_text(), end="")
        return 0
    settings = load(args.config, _overrides(args))
    _print_json({**settings.tree, "nas": [nas.shown(e) for e in settings.nas]})
    return 0


def cmd_nas_add(args: argparse.Namespace) -> int:
    from . import nas

    codes: dict[str, int] = {}
    for item in args.return_code or []:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise InvalidArgument(f"--return-code {item!r}: OUTCOME=CODE expected")
        codes[key.strip()] = int(value)
    with _open(args, create=True) as store:
        entry = nas.add(store, args.address, args.secret, args.name or "", codes)
    print(f"Added NAS {entry.network}" + (f" ({entry.name})" if entry.name else ""))
    return 0


def cmd_nas_list(args: argparse.Namespace) -> int:
    from . import nas

    with _open(args) as store:
        entries = nas.stored(store)
    if args.json:
        _print_json([nas.shown(e) for e in entries])
        return 0
    _table([(e.network, e.name, ", ".join(f"{k}={v}" for k, v in e.return_codes.items()))
            for e in entries], ("network", "name", "return codes"))
    return 0


def cmd_nas_delete(args: argparse.Namespace) -> int:
    from . import nas

    with _open(args) as store:
        entry = nas.delete(store, args.address)
    print(f"Deleted NAS {entry.network}")
    return 0


def add_commands(sub: Any, command: Any) -> None:
    def config_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override any setting (repeatable)")

    sp = command(sub, "serve", cmd_serve, "run the RADIUS and gRPC agents and the metrics "
                                          "endpoint (until SIGTERM)")
    sp.add_argument("--config", metavar="FILE", help="TOML settings (rater config show "
                                                     "--defaults lists them all)")
    sp.add_argument("--workers", type=int, help="worker processes (default 2)")
    sp.add_argument("--listen", metavar="ADDR", help="address to listen on (default 0.0.0.0)")
    sp.add_argument("--radius-auth-port", type=int, metavar="P", help="default 1812")
    sp.add_argument("--radius-acct-port", type=int, metavar="P", help="default 1813")
    sp.add_argument("--metrics-port", type=int, metavar="P",
                    help="Prometheus /metrics (default 9812)")
    sp.add_argument("--grpc-port", type=int, metavar="P", help="gRPC (default 50051)")
    config_options(sp)

    config = sub.add_parser("config", help="the serve configuration").add_subparsers(
        dest="config_command", required=True, metavar="COMMAND")
    sp = command(config, "check", cmd_config_check, "check a config file; name a bad key")
    sp.add_argument("file")
    config_options(sp)
    sp = command(config, "show", cmd_config_show, "the settings in force (JSON)")
    sp.add_argument("--config", metavar="FILE")
    sp.add_argument("--defaults", action="store_true",
                    help="print the defaults file, every key commented")
    config_options(sp)

    group = sub.add_parser("nas", help="NAS entries: who may send RADIUS").add_subparsers(
        dest="nas_command", required=True, metavar="COMMAND")
    sp = command(group, "add", cmd_nas_add, "allow a NAS (an address or CIDR block)")
    sp.add_argument("address")
    sp.add_argument("--secret", required=True, help="the shared secret")
    sp.add_argument("--name")
    sp.add_argument("--return-code", action="append", metavar="OUTCOME=CODE",
                    help="h323-return-code for an outcome, for this NAS (repeatable)")
    sp = command(group, "list", cmd_nas_list, "the NAS entries")
    sp.add_argument("--json", action="store_true")
    sp = command(group, "delete", cmd_nas_delete, "remove a NAS entry")
    sp.add_argument("address")
