"""A throw-away PKI for TLS tests, made with the ``openssl`` command.

``make_pki(dir)`` writes a CA, a server certificate for 127.0.0.1 and
``localhost``, a client certificate from the same CA, and a client
certificate from another CA (one the receiver must refuse).  EC P-256 keys:
fast to make.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess
from dataclasses import dataclass

import pytest

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass
class Pki:
    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    rogue_cert: pathlib.Path       # signed by another CA
    rogue_key: pathlib.Path
    other_ca: pathlib.Path


def _run(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=str(cwd), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   stdin=subprocess.DEVNULL, timeout=60)


def _ca(d: pathlib.Path, name: str) -> None:
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
         "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def _leaf(d: pathlib.Path, name: str, ca: str, ext: str) -> None:
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(ext + "\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
         f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
         "-extfile", f"{name}.ext", cwd=d)


def make_pki(d: pathlib.Path) -> Pki:
    if not shutil.which(OPENSSL) and not pathlib.Path(OPENSSL).exists():
        pytest.fail("openssl not installed (apt-get install openssl)")
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "otherca")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth")
    _leaf(d, "rogue", "otherca", "extendedKeyUsage=clientAuth")
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key",
               d / "client.pem", d / "client.key", d / "rogue.pem",
               d / "rogue.key", d / "otherca.pem")
