"""A small Python API over a lab, for tests: start, inspect, inject faults, stop."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from . import control, launcher, layout
from .enterprise_ca import DEFAULT_TEMPLATES, EnterpriseCa
from .fleet import FleetOptions


class Lab:
    """A lab in `directory`; `Lab.up(...)` starts one, `Lab(directory)` attaches to a running one."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory).resolve()

    @classmethod
    def up(
        cls,
        directory: Path | str,
        hosts: int = 1,
        *,
        auth: str = "ntlm",
        restart_delay: float = 1.0,
        expiring_in: float = 365.0,
        scenario: str = "healthy",
        base_address: str | None = None,
        templates: tuple[str, ...] = DEFAULT_TEMPLATES,
        pending_templates: tuple[str, ...] = (),
        clock_offsets: dict[str, float] | None = None,
        connection: str = "winrm",
    ) -> Lab:
        """`templates` and `pending_templates` as `up --templates` takes them, one `NAME` or `NAME:DAYS` each."""
        lab = cls(directory)
        EnterpriseCa.from_specs(templates, pending_templates)
        launcher.up(
            FleetOptions(
                lab.dir, hosts, auth, restart_delay, expiring_in, scenario, base_address,
                templates=tuple(templates), pending_templates=tuple(pending_templates), connection=connection,
                clock_offsets=tuple((name, float(seconds)) for name, seconds in (clock_offsets or {}).items()),
            )
        )
        return lab

    def down(self) -> bool:
        return launcher.stop(self.dir)

    def reset(self, shape: FleetOptions | None = None) -> dict[str, Any]:
        """Every host back as `up` handed it out, in place (same addresses, CA, password, inventory): `hosts`, `reset_s`.

        With ``shape`` (this lab's directory), the lab `up` with those options hands out, with this lab's CA and password.
        """
        fields = {} if shape is None else {"shape": shape.shape()}
        result: dict[str, Any] = control.request(self.dir, "reset", timeout_s=control.RESET_TIMEOUT_S, **fields)
        return result

    @property
    def info(self) -> dict[str, Any]:
        """lab.json: hosts, addresses, FQDNs, auth, pid."""
        info: dict[str, Any] = json.loads(layout.lab_json(self.dir).read_text())
        return info

    @property
    def inventory(self) -> Path:
        return layout.inventory(self.dir)

    @property
    def ca_pem(self) -> Path:
        return layout.ca_pem(self.dir)

    def hosts(self) -> list[str]:
        return [host["name"] for host in self.info["hosts"]]

    def address(self, host: str) -> str:
        for entry in self.info["hosts"]:
            if entry["name"] == host:
                return str(entry["address"])
        raise KeyError(host)

    def state(self, host: str) -> dict[str, Any]:
        state: dict[str, Any] = control.request(self.dir, "state", host=host)
        return state

    def fault(self, host: str, **settings: object) -> dict[str, Any]:
        """E.g. `lab.fault("xu01", fail_primitive="cert_list", restart_delay=5)`."""
        result: dict[str, Any] = control.request(self.dir, "fault", host=host, set={k: str(v) for k, v in settings.items()})
        return result

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move every host's clock forward; the tasks it passes have run on return. The clocks after: `hosts` {name: {`now`, `offset_s`}}."""
        result: dict[str, Any] = control.request(self.dir, "clock", advance=seconds)
        return result

    def set_clock_offset(self, host: str, seconds: float) -> dict[str, Any]:
        """Set ``host``'s clock ``seconds`` ahead of real time (negative: behind); its tasks now due run at once."""
        result: dict[str, Any] = control.request(self.dir, "clock", host=host, offset=seconds)
        return result

    def clock(self) -> dict[str, Any]:
        """Every host's clock: `advanced_s` (the fleet's), `hosts` {name: {`now` (ISO 8601 UTC, ms), `offset_s`}}."""
        result: dict[str, Any] = control.request(self.dir, "clock")
        return result

    def events(self, host: str, type: str | None = None) -> list[dict[str, Any]]:
        path = layout.events_file(self.dir, host)
        events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [event for event in events if type is None or event["type"] == type]

    def winacme(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = control.request(self.dir, "winacme", host=host)
        return result

    def autoenroll(self, host: str) -> dict[str, Any]:
        """Auto-enrolment renews the bound certificate: `old_thumbprint` (archived), `new_thumbprint`, `template`."""
        result: dict[str, Any] = control.request(self.dir, "autoenroll", host=host)
        return result

    def plant(self, host: str, kind: str) -> dict[str, Any]:
        """A near miss (or `better`) beside the bound certificate (xulab.nearmiss): `thumbprint`, `kind`, `not_after`, ..."""
        result: dict[str, Any] = control.request(self.dir, "plant", host=host, kind=kind)
        return result

    def issue(
        self,
        host: str,
        password: str,
        out: Path | str | None = None,
        *,
        expired: bool = False,
        not_yet_valid: bool = False,
        san: list[str] | None = None,
        no_server_auth: bool = False,
        same_key_as: str | None = None,
        days_left: float | None = None,
    ) -> dict[str, Any]:
        """Mint a PFX (valid for `days_left` more days, 365 unless given); the answer has `pfx` (bytes), `thumbprint`,
        `not_before`, `not_after`, ... Written to `out` if given."""
        result: dict[str, Any] = control.request(
            self.dir,
            "issue",
            host=host,
            password=password,
            expired=expired,
            not_yet_valid=not_yet_valid,
            san=san,
            no_server_auth=no_server_auth,
            same_key_as=same_key_as,
            days_left=days_left,
        )
        result["pfx"] = base64.b64decode(result.pop("pfx_b64"))
        if out is not None:
            Path(out).write_bytes(result["pfx"])
        return result
