"""Where a lab keeps its files inside DIR."""

from __future__ import annotations

from pathlib import Path

# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def hosts_dir(directory: Path) -> Path:
    return directory / "hosts"


def host_dir(directory: Path, name: str) -> Path:
    return hosts_dir(directory) / name


def events_file(directory: Path, name: str) -> Path:
    return host_dir(directory, name) / "events.jsonl"


def ca_pem(directory: Path) -> Path:
    return directory / "ca.pem"


def inventory(directory: Path) -> Path:
    return directory / "inventory.yml"


def lab_json(directory: Path) -> Path:
    return directory / "lab.json"


def control_socket(directory: Path) -> Path:
    return directory / "control.sock"


def pid_file(directory: Path) -> Path:
    return directory / "lab.pid"


def log_file(directory: Path) -> Path:
    return directory / "lab.log"


def ssh_dir(directory: Path) -> Path:
    """The controller's side of the SSH endpoints: the administrator's private key and the hosts' known_hosts."""
    return directory / "ssh"


def generated(directory: Path) -> list[Path]:
    """What `up` replaces: everything a previous lab in DIR left, and nothing else."""
    return [
        inventory(directory), lab_json(directory), ca_pem(directory), control_socket(directory), pid_file(directory),
        ssh_dir(directory) / "id_ed25519", ssh_dir(directory) / "known_hosts",
    ]
