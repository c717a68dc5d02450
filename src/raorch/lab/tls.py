"""The lab's own certificate authority and server certificate (``cryptography``).

On every start the lab makes a fresh CA and a server certificate for ``127.0.0.1`` and
``localhost`` (SAN IP and DNS, as pypsrp/requests validate them), so that certificate
validation stays on in the demo: the inventory points ``ca_bundle`` at the CA file.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class LabCertificates:
    ca_path: Path  # the CA bundle clients validate against
    cert_path: Path  # server certificate chain (server, then CA)
    key_path: Path  # server private key (owner-only)
    # RFC 5929 tls-server-end-point channel binding data for NTLM (SHA-256 of the DER cert).
    cbt_application_data: bytes

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx


def _issue(
    common_name: str,
    names: list[x509.GeneralName],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh CA and a server certificate it signed for ``names``: (CA, server, server key)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raorch lab CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(names),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca_cert, cert, key


def make_certificates(directory: Path) -> LabCertificates:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_cert, cert, key = _issue(
        "localhost",
        [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")],
        now - datetime.timedelta(minutes=5),
        now + datetime.timedelta(days=30),
    )
    ca_path = directory / "lab-ca.pem"
    cert_path = directory / "lab-server.pem"
    key_path = directory / "lab-server.key"
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(ca_path, ca_pem, 0o644)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM) + ca_pem, 0o644)
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return LabCertificates(
        ca_path, cert_path, key_path, b"tls-server-end-point:" + hashlib.sha256(der).digest()
    )


def write_dc_certificates(tls_dir: Path, dc_fqdn: str) -> None:
    """The LDAPS certificate of the lab's domain controller, in the files Samba reads
    (``tls keyfile/certfile/cafile``: private/tls/key.pem, cert.pem, ca.pem), written before
    its first start so that Samba does not make its own: Samba's would be valid from the
    minute it starts, and a lab host whose clock runs behind (the clock-skew tests) would
    refuse it as "not yet valid". A real DC's certificate was issued long before; this one
    is valid from a day before, for two years."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_cert, cert, key = _issue(
        dc_fqdn,
        [x509.DNSName(dc_fqdn)],
        now - datetime.timedelta(days=1),
        now + datetime.timedelta(days=730),
    )
    _write(tls_dir / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(tls_dir / "cert.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(
        tls_dir / "key.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = tmp.open("wb")
    try:
        tmp.chmod(mode)
        fd.write(data)
    finally:
        fd.close()
    tmp.replace(path)
