"""A real OpenSSH server on loopback, for the SFTP transport's tests.

`running_sshd` generates a host key and a client key, writes an sshd_config into a temporary
folder (a free loopback port, key authentication only, no PAM, internal-sftp) and runs
``/usr/sbin/sshd -D -e`` until the block ends. As root it serves every local user (tests log in
as root and as ``nobody``); as another user, sshd can only log that user in, which is enough for
everything but the permission test. Tests are skipped, with the reason, where sshd is absent.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class SshServer:
    """A running sshd and what a client needs to reach it."""

    host: str
    port: int
    user: str
    #: The client's private key (OpenSSH format), authorized for every user.
    client_key: str
    #: The server's host key fingerprint, ``SHA256:...``.
    fingerprint: str
    #: A known_hosts file trusting the server's host key.
    known_hosts: Path
    log: Path


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def generate_key(path: Path) -> asyncssh.SSHKey:
    """A new ed25519 key pair written as OpenSSH files ``path`` and ``path.pub``."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    key.write_public_key(str(path) + ".pub")
    path.chmod(0o600)
    return key


@contextmanager
def running_sshd(folder: Path) -> Iterator[SshServer]:
    """sshd serving SFTP on 127.0.0.1 from `folder`'s configuration, stopped after."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is absent (CI installs Debian's openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    host_key = generate_key(folder / "host_ed25519")
    client_key = generate_key(folder / "client_ed25519")
    # sshd reads authorized keys as the user logging in: outside pytest's private tmp folder,
    # readable by all, so that a test may log in as nobody.
    keys = Path(tempfile.mkdtemp(prefix="cohub-sshd-keys-"))
    keys.chmod(0o755)
    authorized = keys / "authorized_keys"
    authorized.write_text(client_key.export_public_key().decode())
    authorized.chmod(0o644)
    port = free_port()
    as_root = os.geteuid() == 0
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {folder / 'host_ed25519'}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password" if as_root else "",
                "Subsystem sftp internal-sftp",
                "ForceCommand internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    if as_root:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
    log = folder / "sshd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(port, process, log)
        public = host_key.export_public_key().decode().strip()
        known_hosts = folder / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {public}\n")
        yield SshServer(
            host="127.0.0.1",
            port=port,
            user=getpass.getuser(),
            client_key=client_key.export_private_key().decode(),
            fingerprint=host_key.get_fingerprint("sha256"),
            known_hosts=known_hosts,
            log=log,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(keys)


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.terminate()
    raise RuntimeError(f"sshd did not listen on port {port} within 15 s: {log.read_text()}")
