"""Throw-away certificate authorities for TLS tests (the ``cryptography`` package).

``CertificateAuthority.create(dir, name)`` writes ``<name>-ca.pem``; ``issue`` writes a
leaf certificate and its key signed by that CA, for a server (host names and IP
addresses in its subjectAltName) or a client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(
        now + dt.timedelta(days=1)
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA whose certificate is at ``path`` (PEM)."""

    directory: Path
    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    path: Path

    @classmethod
    def create(cls, directory: Path, label: str) -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"redox test CA {label}")])
        cert = _validity(
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
        )
        cert = cert.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        path = directory / f"{label}-ca.pem"
        path.write_bytes(cert.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        return cls(directory, name, key, path)

    def issue(
        self, label: str, names: tuple[str, ...] = (), *, client: bool = False
    ) -> tuple[Path, Path]:
        """A leaf certificate and its key: ``(<label>.pem, <label>.key)``.

        ``names``: DNS names and IP addresses for the subjectAltName (servers);
        ``client``: a client certificate (extended key usage clientAuth).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        common = names[0] if names else label
        builder = _validity(
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
        )
        if names:
            alt: list[x509.GeneralName] = []
            for n in names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        cert_path, key_path = self.directory / f"{label}.pem", self.directory / f"{label}.key"
        cert_path.write_bytes(
            builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        _write_key(key, key_path)
        return cert_path, key_path
