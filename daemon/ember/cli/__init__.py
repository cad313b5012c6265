"""The `ember` command: `serve` and `config` here, the shared daemon's commands in cli/shared.py,
`ember stats` in cli/stats.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import __version__
from ..config import ConfigError, describe_effective, load_config, parse_scalar


def add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (file < EMBER_* environment < these flags)")
    g.add_argument("--config", metavar="PATH", help="TOML config file (default: $XDG_CONFIG_HOME/ember/config.toml)")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="set any setting, e.g. --set models.default.quantization=none (repeatable)")
    g.add_argument("--model", metavar="SOURCE", help="source of the default model (hub id, folder, .gguf)")
    g.add_argument("--threads", type=int, help="threads for model work (default: per engine, docs/engines.md)")
    g.add_argument("--device", help="device of the default model: auto, cpu, cuda, cuda:N")
    g.add_argument("--quantization", help="auto, none, bnb-8bit, bnb-4bit, int8-dynamic")
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    g.add_argument("--log-file", metavar="PATH")
    g.add_argument("--preload", metavar="MODEL", action="append", help="load this model at start")


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_scalar(value)
    flags = {"model": "models.default.source", "threads": "daemon.threads", "device": "models.default.device",
             "quantization": "models.default.quantization", "log_level": "daemon.log_level",
             "log_file": "daemon.log_file", "preload": "daemon.preload"}
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    return out


def load(args: argparse.Namespace):
    return load_config(args.config, cli_overrides(args))


def cmd_serve(args: argparse.Namespace) -> int:
    from ..huge_pages import restart_with_huge_pages
    from ..logs import quiet_libraries, setup_logging
    from ..serve import run_stdio

    restart_with_huge_pages()
    loaded = load(args)
    quiet_libraries()
    setup_logging(loaded.settings.daemon.log_level, loaded.settings.daemon.log_file)
    return run_stdio(loaded, parent_pid=args.parent_pid)


def cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(describe_effective(load(args)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="Resident local models for editors, over JSON-RPC.")
    parser.add_argument("--version", action="version", version=f"ember {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve JSON-RPC on stdin/stdout")
    add_config_flags(serve)
    serve.add_argument("--parent-pid", type=int, help="exit when this process dies")
    serve.set_defaults(func=cmd_serve)

    config = sub.add_parser("config", help="print the effective configuration and where each value came from")
    add_config_flags(config)
    config.set_defaults(func=cmd_config)

    for register in _extra_commands():
        register(sub, add_config_flags, load)
    return parser


def _extra_commands() -> list[Any]:
    """Subcommands that live in their own modules (the shared daemon and its clients)."""
    from .adapter import register as register_adapter
    from .shared import register
    from .stats import register as register_stats

    return [register, register_stats, register_adapter]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        sys.stderr.write(f"ember: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
