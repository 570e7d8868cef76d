"""Run the production Nginx config (deploy/nginx/nginx.conf) on loopback, with a throwaway CA.

The test config is rendered from the deployed file, not kept beside it: only the upstream
servers, listen ports, certificate and pid/log/temp paths change. Each rewrite must match
exactly, so a change to nginx.conf that the rendering no longer understands fails loudly.

An nginx older than the production image's (Debian's 1.22 here) gets two more rewrites, see
``for_nginx_version``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ROOT, ServerProcess, free_port

NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
# First open-source releases that parse what nginx.conf uses.
RESOLVE_SINCE = (1, 27, 3)  # `server ... resolve;` in an upstream block
HTTP2_ON_SINCE = (1, 25, 1)  # `http2 on;` (before it, `listen ... http2`)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def nginx_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {out.stderr!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


@dataclass(frozen=True)
class TestCA:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_test_ca(folder: Path, hostnames: tuple[str, ...] = ("localhost",),
                 ips: tuple[str, ...] = ("127.0.0.1",)) -> TestCA:
    """A self-signed CA and a server certificate it signed, for the names and IPs given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maas test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    out = TestCA(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    out.ca_cert.write_bytes(ca.public_bytes(pem))
    out.server_cert.write_bytes(cert.public_bytes(pem))
    out.server_key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    out.server_key.chmod(0o600)
    return out


def _sub(text: str, pattern: str, replacement: str | Callable[[re.Match[str]], str], count: int | None = 1) -> str:
    """Replace ``pattern``; it must match ``count`` times (``None``: at least once)."""
    new, n = re.subn(pattern, replacement if callable(replacement) else lambda _: replacement, text,
                     flags=re.MULTILINE)
    if n != count and not (count is None and n > 0):
        raise AssertionError(f"nginx.conf: expected {count or 'some'} match(es) of {pattern!r}, found {n}")
    return new


def for_nginx_version(source: str, version: tuple[int, int, int]) -> str:
    """The deployed config in the form an older nginx parses: these two changes and no other.

    The production image (nginx 1.28) reads it as shipped; the nginx the tests find on the
    machine may be older (Debian's 1.22). Before 1.27.3 open-source nginx has no ``resolve`` on
    upstream servers: the flag and the ``resolver`` that serves it go (the test's upstreams are
    loopback addresses, nothing to resolve). Before 1.25.1 there is no ``http2 on;``: HTTP/2 goes
    back on the ``listen`` line.
    """
    text = source
    if version < RESOLVE_SINCE:
        text = _sub(text, r"^[ \t]*resolver 127\.0\.0\.11 valid=\d+s;\n", "")
        text = _sub(text, r"^([ \t]*server \S+(?: \w+=\S+)*) resolve;$", lambda m: f"{m.group(1)};", count=None)
    if version < HTTP2_ON_SINCE:
        text = _sub(text, r"^([ \t]*listen 443 ssl);\n[ \t]*http2 on;$", lambda m: f"{m.group(1)} http2;")
    return text


def render_nginx_conf(source: str, *, prefix: Path, upstreams: list[str], https_port: int, http_port: int,
                      cert: Path, key: Path, version: tuple[int, int, int], plain_port: int | None = None) -> str:
    """The deployed config with loopback ports, the given upstreams and every path under ``prefix``,
    in the form nginx ``version`` parses; ``plain_port`` (the benchmark's plain-HTTP hop): the
    HTTPS server also listens there without TLS."""
    text = for_nginx_version(source, version)
    text = _sub(text, r"^pid .*;$", f"pid {prefix / 'nginx.pid'};")
    text = _sub(text, r"^error_log .*;$", f"error_log {prefix / 'error.log'} warn;")
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / f"{name}_temp").mkdir(parents=True, exist_ok=True)
        text = _sub(text, rf"^[ \t]*{name}_temp_path .*;$", f"    {name}_temp_path {prefix / (name + '_temp')};")
    text = _sub(text, r"^[ \t]*access_log /var/log/nginx/access\.log maas;$",
                f"    access_log {prefix / 'access.log'} maas;")
    # IP addresses, so never `resolve` (nothing to look up, on any version); the shipped lines'
    # other parameters (max_fails) stay.
    shipped = re.search(r"^[ \t]*server router\d+:8000((?: \w+=\S+)*)(?: resolve)?;$", text, re.M)
    params = shipped.group(1) if shipped else ""
    servers = "".join(f"        server {u}{params};\n" for u in upstreams)
    text = _sub(text, r"^(?:[ \t]*server router\d+:8000(?: \w+=\S+)*(?: resolve)?;\n)+", servers)
    text = _sub(text, r"^[ \t]*listen 80;$", f"        listen 127.0.0.1:{http_port};")
    plain = f"\n        listen 127.0.0.1:{plain_port};" if plain_port else ""
    text = _sub(text, r"^[ \t]*listen 443 ssl( http2)?;$",
                lambda m: f"        listen 127.0.0.1:{https_port} ssl{m.group(1) or ''};{plain}")
    text = _sub(text, r"^[ \t]*ssl_certificate /.*;$", f"        ssl_certificate {cert};")
    text = _sub(text, r"^[ \t]*ssl_certificate_key /.*;$", f"        ssl_certificate_key {key};")
    text = _sub(text, r"^worker_processes .*;$", "worker_processes 2;")
    if os.geteuid() == 0:
        # As root, nginx would switch its workers to "nobody", who cannot enter the test's
        # private temp folder; keep them as the current user.
        text = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" + text
    return text


@dataclass
class FrontServer:
    """A TLS front (Nginx, Traefik) run from files under ``prefix``, with its access log there."""

    process: ServerProcess
    prefix: Path
    url: str
    ca: TestCA

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def stop(self) -> None:
        self.process.stop()


class NginxServer(FrontServer):
    pass


def start_nginx(prefix: Path, upstreams: list[str], ca: TestCA, plain: bool = False) -> NginxServer:
    """Render deploy/nginx/nginx.conf into ``prefix`` and run it in the foreground on free ports;
    ``plain``: the server's ``url`` is a plain-HTTP port of the HTTPS server (see ``render_nginx_conf``)."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (scripts/bootstrap.sh test installs it)")
    prefix.mkdir(parents=True, exist_ok=True)
    https_port, http_port = free_port(), free_port()
    plain_port = free_port() if plain else None
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_conf(NGINX_CONF.read_text(), prefix=prefix, upstreams=upstreams,
                                      https_port=https_port, http_port=http_port,
                                      cert=ca.server_cert, key=ca.server_key, version=nginx_version(binary),
                                      plain_port=plain_port))
    process = ServerProcess([binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
                             "-g", "daemon off;"], env=dict(os.environ), log_path=prefix / "stdout.log")
    url = f"https://127.0.0.1:{https_port}"
    _wait_listening(process, url, ca.ssl_context())
    return NginxServer(process, prefix, f"http://127.0.0.1:{plain_port}" if plain_port else url, ca)


def _wait_listening(process: ServerProcess, url: str, context: ssl.SSLContext, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.proc.returncode}:\n{process.log_text()}")
        try:
            # Any HTTP answer (the edge's own 404 for /metrics) means TLS and the listener are up.
            urllib.request.urlopen(url + "/metrics", timeout=2, context=context)
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
            continue
        return
    process.kill()
    raise TimeoutError(f"nginx did not listen on {url} within {timeout}s")
