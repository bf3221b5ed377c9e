"""`python -m xulab`: the lab's command line (see tests/lab/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import control, launcher, layout
from .enterprise_ca import DEFAULT_TEMPLATES, split_specs
from .errors import LabError
from .faults import FAULT_KEYS
from .fleet import CONNECTIONS, FleetOptions, serve
from .host import OS_VERSIONS
from .nearmiss import PLANT_KINDS
from .scenarios import SCENARIOS


def _clock_offsets(specs: list[str] | None) -> tuple[tuple[str | None, float], ...]:
    """`--clock-offset SECONDS` (every host) or `NAME=SECONDS`, as often as needed; later ones win."""
    offsets: list[tuple[str | None, float]] = []
    for spec in specs or []:
        name, separator, value = spec.rpartition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or (separator and not name.strip()):
            raise LabError(f"--clock-offset takes SECONDS or NAME=SECONDS (seconds ahead; negative: behind), not {spec!r}")
        offsets.append((name.strip() if separator else None, seconds))
    return tuple(offsets)


def _options(args: argparse.Namespace) -> FleetOptions:
    templates, pending_templates = split_specs(args.templates), split_specs(args.pending_templates)
    options = FleetOptions(
        directory=args.dir,
        hosts=args.hosts,
        auth=args.auth,
        connection=args.connection,
        restart_delay=args.restart_delay,
        expiring_in=args.expiring_in,
        scenario=args.scenario,
        base_address=args.base_address,
        call_overhead=args.call_overhead,
        windows_version=args.windows_version,
        templates=templates,
        pending_templates=pending_templates,
        clock_offsets=_clock_offsets(args.clock_offset),
    )
    # Checked here, so that `up` says what is wrong instead of a lab that failed to start.
    options.check()
    return options


def up_options(directory: Path, args: list[str]) -> FleetOptions:
    """The options `up --dir DIRECTORY ARGS` starts a lab with (its defaults for what ``args`` leaves out)."""
    parser = argparse.ArgumentParser(prog="python -m xulab up", exit_on_error=False)
    _add_fleet_options(parser)
    try:
        parsed = parser.parse_args(args)
    except argparse.ArgumentError as exc:
        raise LabError(f"up {' '.join(args)}: {exc}") from exc
    parsed.dir = directory
    return _options(parsed)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def cmd_up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    info = launcher.up(_options(args))
    print(
        f"xulab: {len(info['hosts'])} hosts up in {time.monotonic() - began:.1f}s "
        f"({info['hosts'][0]['address']}..{info['hosts'][-1]['address']}, {info['connection']}"
        f"{'' if info['connection'] == 'ssh' else ' ' + info['auth']}, {info['scenario']})"
    )
    print(f"inventory: {info['inventory']}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = launcher.stop(args.dir.resolve())
    print(f"xulab: {'stopped' if stopped else 'no lab running in'} {args.dir}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    up_args = args.up[1:] if args.up[:1] == ["--"] else args.up
    fields = {"shape": up_options(args.dir, up_args).shape()} if up_args else {}
    _print_json(control.request(args.dir, "reset", timeout_s=control.RESET_TIMEOUT_S, **fields))
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    _print_json(control.request(args.dir, "state", host=args.host))
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    settings: dict[str, str] = {}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            raise LabError(f"--set takes KEY=VALUE, not {item!r} (keys: {', '.join(FAULT_KEYS)})")
        settings[key.strip()] = value.strip()
    _print_json(control.request(args.dir, "fault", host=args.host, set=settings))
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    result = control.request(
        args.dir,
        "issue",
        host=args.host,
        password=password,
        expired=args.expired,
        not_yet_valid=args.not_yet_valid,
        san=args.san,
        no_server_auth=args.no_server_auth,
        same_key_as=args.same_key_as,
        intermediate=args.intermediate,
        aes=args.aes,
        expires_with=args.expires_with,
    )
    args.out.write_bytes(base64.b64decode(result.pop("pfx_b64")))
    _print_json({"out": str(args.out), **result})
    return 0


def cmd_winacme(args: argparse.Namespace) -> int:
    _print_json(control.request(args.dir, "winacme", host=args.host))
    return 0


def cmd_autoenroll(args: argparse.Namespace) -> int:
    _print_json(control.request(args.dir, "autoenroll", host=args.host))
    return 0


def cmd_plant(args: argparse.Namespace) -> int:
    _print_json(control.request(args.dir, "plant", host=args.host, kind=args.kind))
    return 0


def cmd_clock(args: argparse.Namespace) -> int:
    if args.offset is not None and args.host is None:
        raise LabError("--offset sets one host's clock: give --host")
    _print_json(control.request(args.dir, "clock", host=args.host, offset=args.offset, advance=args.advance))
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    path = layout.events_file(args.dir, args.host)
    if not path.exists():
        raise LabError(f"no events for {args.host} in {args.dir}")
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and (args.type is None or json.loads(line).get("type") == args.type):
            print(line)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    options = _options(args)
    logging.basicConfig(
        filename=layout.log_file(options.directory),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    layout.pid_file(options.directory).write_text(f"{os.getpid()}\n")
    asyncio.run(serve(options))
    return 0


def _add_fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument(
        "--auth", choices=["basic", "ntlm"], default="ntlm",
        help="WinRM authentication: ntlm (default; pywinrm encrypts every message) or basic (clear text over HTTP)",
    )
    parser.add_argument(
        "--connection", choices=list(CONNECTIONS), default="winrm",
        help="how the inventory reaches the hosts: winrm (default) or ssh (Win32-OpenSSH, PowerShell as the shell; WinRM stays up)",
    )
    parser.add_argument("--restart-delay", type=float, default=1.0, help="seconds XU needs to start (default 1)")
    parser.add_argument("--expiring-in", type=float, default=365.0, help="days the healthy certificates have left")
    parser.add_argument("--scenario", choices=SCENARIOS, default="healthy")
    parser.add_argument(
        "--call-overhead", type=float, default=0.0, metavar="SECONDS",
        help="what every remote call costs before its script runs, as on Windows (default 0; 1 to 3 is typical)",
    )
    parser.add_argument(
        "--windows-version", choices=sorted(OS_VERSIONS),
        help="the Windows Server every host runs (default 2022; the mixed scenario cycles 2022, 2019, 2016)",
    )
    parser.add_argument("--base-address", help="address of xu01 (default: the first free 127.0.B.1 from 127.0.1.1)")
    parser.add_argument(
        "--templates", default=",".join(DEFAULT_TEMPLATES), metavar="NAME[:DAYS],...",
        help="AD CS templates every host may enrol, with their validity in days (default WebServer; Windows' own keep theirs)",
    )
    parser.add_argument(
        "--pending-templates", default="", metavar="NAME[:DAYS],...",
        help="templates the hosts may enrol that need a CA manager's approval: certreq leaves the request pending",
    )
    parser.add_argument(
        "--clock-offset", action="append", metavar="[NAME=]SECONDS",
        help="a host whose clock is off by SECONDS (ahead; negative: behind); without NAME every host; may be repeated",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xulab", description="A simulated Xtract Universal fleet.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Any, help_text: str, host: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--dir", type=lambda text: Path(text).resolve(), required=True)
        if host:
            sub.add_argument("--host", required=True)
        sub.set_defaults(handler=handler)
        return sub

    _add_fleet_options(command("up", cmd_up, "start a fleet in the background", host=False))
    command("down", cmd_down, "stop the fleet", host=False)
    command("reset", cmd_reset, "put every host back as `up` handed it out (files, stores, firewall, service, tasks, faults, clock, events)",
            host=False).add_argument(
        "up", nargs=argparse.REMAINDER, metavar="-- UP_OPTIONS",
        help="after --, `up`'s options (--hosts N ...): the lab becomes what `up` with them hands out (same CA and password)",
    )
    command("state", cmd_state, "a host's simulated state as JSON")
    command("fault", cmd_fault, "inject faults").add_argument("--set", action="append", required=True, metavar="KEY=VALUE")
    issue = command("issue", cmd_issue, "mint a PFX signed by the lab CA")
    issue.add_argument("--out", type=Path, required=True)
    issue.add_argument("--password-file", type=Path, required=True)
    issue.add_argument("--expired", action="store_true")
    issue.add_argument("--not-yet-valid", action="store_true")
    issue.add_argument("--san", nargs="+", metavar="NAME")
    issue.add_argument("--no-server-auth", action="store_true")
    issue.add_argument("--same-key-as", metavar="THUMBPRINT")
    issue.add_argument("--intermediate", action="store_true", help="signed by the lab's issuing CA, which the PFX carries")
    issue.add_argument("--aes", action="store_true", help="encrypted as OpenSSL 3 does by default (PBES2, AES-256), not as Windows exports")
    issue.add_argument("--expires-with", metavar="THUMBPRINT", help="expire at the same second as this certificate of the host's store")
    command("winacme", cmd_winacme, "a win-acme style renewal on the host")
    command("autoenroll", cmd_autoenroll, "certificate auto-enrolment renews the host's bound certificate")
    command("plant", cmd_plant, "put a near miss (or a better certificate) beside the bound one").add_argument(
        "--kind", required=True, choices=PLANT_KINDS
    )
    command("events", cmd_events, "print a host's events").add_argument("--type")
    clock = command("clock", cmd_clock, "advance the hosts' clocks, set one host's offset, print the clocks", host=False)
    clock.add_argument("--host", help="the host whose clock to set or print (default: every host's is printed)")
    clock.add_argument("--offset", type=float, metavar="SECONDS", help="set the host's clock SECONDS ahead of real time (negative: behind)")
    clock.add_argument(
        "--advance", type=float, metavar="SECONDS",
        help="move every host's clock forward; the scheduled tasks it passes have run when the command returns",
    )
    _add_fleet_options(command("serve", cmd_serve, "run the fleet in the foreground (what `up` starts)", host=False))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except LabError as exc:
        print(f"xulab: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
