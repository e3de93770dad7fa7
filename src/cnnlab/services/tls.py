"""TLS for the exposed ports: a CA and a server certificate made on first start, or a site's own.

Clients trust `tls/ca.pem` (MLFLOW_TRACKING_SERVER_CERT_PATH, DVC's `ssl_verify`); the keys are
mode 0600 under the state folder. A certificate is made again when the exposed address changes.
A second, internal CA signs the one certificate SeaweedFS's parts present to each other over
gRPC (mutual TLS): a local program without it cannot talk to their gRPC ports.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError
from cnnlab.core.io import write_text

DAYS = 825  # the longest validity clients such as macOS accept for a server certificate


def paths(state: Path) -> dict[str, Path]:
    folder = state / "tls"
    return {"ca": folder / "ca.pem", "ca_key": folder / "ca.key",
            "cert": folder / "server.pem", "key": folder / "server.key"}


def files(cfg: DictConfig) -> dict[str, Path]:
    """Certificate, key and the CA clients trust: the site's (`tls.*`), else the generated."""
    if cfg.tls.cert or cfg.tls.key:
        site = {"cert": Path(cfg.tls.cert or ""), "key": Path(cfg.tls.key or ""),
                "ca": Path(cfg.tls.ca or cfg.tls.cert or "")}
        for name, path in site.items():
            if not path.is_file():
                raise ServiceError(f"tls.{name} ({path}): not a file; give the site's PEM "
                                   "certificate and key, or leave tls.cert and tls.key null")
        return site
    return paths(Path(cfg.state_dir))


def internal(state: Path) -> dict[str, Path]:
    """The internal CA and the SeaweedFS parts' client-and-server certificate, made once."""
    folder = state / "tls" / "internal"
    found = {"ca": folder / "ca.pem", "ca_key": folder / "ca.key",
             "cert": folder / "weed.pem", "key": folder / "weed.key"}
    if not found["cert"].exists():
        _make_ca(found)
        _make_server_cert(found, "cnnlab-seaweedfs", client=True)
    return found


def ensure(cfg: DictConfig) -> dict[str, Path]:
    """The TLS files for `cfg.expose`, generated when there are none for that address."""
    found = files(cfg)
    if cfg.tls.cert:
        return found
    if not found["ca"].exists():
        _make_ca(found)
    if not found["cert"].exists() or _address(found["cert"]) != cfg.expose:
        _make_server_cert(found, cfg.expose)
    return found


def _key_pem(key: object) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: object) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _builder(subject: str, issuer: str, public_key: object) -> object:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DAYS)))


def _make_ca(found: dict[str, Path]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder("cnnlab stack CA", "cnnlab stack CA", key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    write_text(found["ca_key"], _key_pem(key), mode=0o600)
    write_text(found["ca"], _cert_pem(cert))


def _make_server_cert(found: dict[str, Path], address: str, client: bool = False) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_key = serialization.load_pem_private_key(found["ca_key"].read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(address, "cnnlab stack CA", key.public_key())
            .add_extension(x509.SubjectAlternativeName(_names(address)), critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH,
                 *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_text(found["key"], _key_pem(key), mode=0o600)
    write_text(found["cert"], _cert_pem(cert))


def _names(address: str) -> list:
    from cryptography import x509

    try:
        return [x509.IPAddress(ipaddress.ip_address(address))]
    except ValueError:
        return [x509.DNSName(address)]


def _address(cert: Path) -> str:
    from cryptography import x509

    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    found = [str(n.value) for n in names]
    return found[0] if found else ""
