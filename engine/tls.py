"""A self-signed certificate for HTTPS/WSS without one at hand (--ssl-self-signed):
made once with the openssl command into <data-dir>/tls/ and reused."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from pathlib import Path

log = logging.getLogger("engine")

DAYS = 825  # the longest validity Apple platforms accept for a TLS certificate


class SelfSignedError(RuntimeError):
    """The certificate could not be made."""


def self_signed(data_dir: Path) -> tuple[Path, Path]:
    """The certificate and key in ``data_dir/tls``, made first if missing, for
    localhost, 127.0.0.1 and this host's name."""
    directory = data_dir / "tls"
    cert, key = directory / "self-signed.pem", directory / "self-signed.key"
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SelfSignedError("--ssl-self-signed needs the openssl command (Debian: apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = socket.gethostname()
    names = f"subjectAltName=DNS:localhost,DNS:{host},IP:127.0.0.1,IP:::1"
    done = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            str(DAYS),
            "-subj",
            f"/CN={host}",
            "-addext",
            names,
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SelfSignedError(f"openssl could not make a certificate: {done.stderr.strip()[-300:]}")
    key.chmod(0o600)
    log.warning(
        "generated a self-signed certificate %s (for localhost, %s, 127.0.0.1): clients must trust it "
        "explicitly; give --ssl-certfile/--ssl-keyfile for a real one",
        cert,
        host,
    )
    return cert, key
