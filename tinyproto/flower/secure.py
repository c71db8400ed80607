"""Credentials of a secure Flower federation: a throw-away CA with a server certificate (TLS)
and one EC key pair per SuperNode (SuperNode authentication).

    python -m tinyproto.flower.secure tls DIR [--host 10.0.0.5 --host server.lab] [--days 30]
    python -m tinyproto.flower.secure node-keys DIR --nodes 4 [--prefix node]

``tls`` writes ``ca.crt`` (what SuperNodes and ``flwr`` trust), ``ca.key`` (only to sign more
certificates; keep it off the nodes), ``server.crt`` and ``server.key`` (the SuperLink's, valid
for 127.0.0.1, localhost and every ``--host``). ``node-keys`` writes ``node-<i>`` (SuperNode
i's private key, OpenSSH format, as ``flower-supernode --auth-supernode-private-key`` reads it)
and ``node-<i>.pub`` (what ``flwr supernode register`` reads). Keys are ECDSA on NIST P-384,
made by the ``cryptography`` package (Flower's own dependency): no crypto is written here.
Private keys are written with mode 0600. An existing file is never overwritten: the command
stops with one line naming it (delete the folder to start over).

What stays the user's job: carrying ``ca.crt`` and each node's private key to its machine over
a channel they trust, keeping ``ca.key`` and the node keys secret, and making new certificates
before ``--days`` runs out (docs/flower.md, "Secure deployment").
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from pathlib import Path

from tinyproto.config import ConfigError

LOCAL_HOSTS = ("127.0.0.1", "localhost")
CA, CA_KEY, SERVER, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"


def _ec_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP384R1())


def _write(path: Path, data: bytes, private: bool) -> None:
    """Write a new file (FileExistsError if it exists); a private one readable by its owner
    only, from the moment it exists."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _fresh(paths: list[Path]) -> None:
    for p in paths:
        if p.exists():
            raise ConfigError(f"{p} exists already: not overwritten (delete it to make new ones)")


def _san(hosts: list[str]):
    from cryptography import x509

    names = []
    for h in dict.fromkeys([*LOCAL_HOSTS, *hosts]):  # in order, once each
        if not isinstance(h, str) or not h.strip() or any(c.isspace() for c in h):
            raise ConfigError(f"invalid host={h!r}: an IP address or a DNS name")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_tls(folder: str | Path, hosts: list[str] = (), days: int = 30) -> dict[str, Path]:
    """A throw-away CA and a SuperLink certificate it signs, valid for 127.0.0.1, localhost
    and ``hosts`` (IP addresses or DNS names) for ``days`` days. Returns the files' paths:
    ``ca``, ``ca_key``, ``certificate``, ``key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise ConfigError(f"invalid days={days!r}: an integer in [1, 3650]")
    folder = Path(folder)
    paths = dict(
        ca=folder / CA, ca_key=folder / CA_KEY, certificate=folder / SERVER, key=folder / SERVER_KEY
    )
    san = _san(list(hosts))
    _fresh(list(paths.values()))
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    ca_key = _ec_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tinyproto throw-away CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA384())
    )
    key = _ec_key()
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tinyproto SuperLink")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write(paths["ca"], ca.public_bytes(pem), private=False)
    _write(paths["ca_key"], ca_key.private_bytes(pem, pkcs8, plain), private=True)
    _write(paths["certificate"], server.public_bytes(pem), private=False)
    _write(paths["key"], key.private_bytes(pem, pkcs8, plain), private=True)
    return paths


def make_node_keys(folder: str | Path, nodes: int, prefix: str = "node") -> list[tuple[Path, Path]]:
    """``nodes`` SuperNode key pairs: ``<prefix>-<i>`` (private, OpenSSH) and
    ``<prefix>-<i>.pub`` (public, OpenSSH) for i = 0..nodes-1; returns (private, public)."""
    from cryptography.hazmat.primitives import serialization

    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"invalid nodes={nodes!r}: an integer >= 1")
    if not prefix or not all(c.isalnum() or c in "-_." for c in prefix):
        raise ConfigError(f"invalid prefix={prefix!r}: letters, digits, '-', '_' or '.'")
    folder = Path(folder)
    pairs = [(folder / f"{prefix}-{i}", folder / f"{prefix}-{i}.pub") for i in range(nodes)]
    _fresh([p for pair in pairs for p in pair])
    folder.mkdir(parents=True, exist_ok=True)
    for private, public in pairs:
        key = _ec_key()
        _write(
            private,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
            private=True,
        )
        _write(
            public,
            key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            + b"\n",
            private=False,
        )
    return pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinyproto.flower.secure",
        description="Make the credentials of a secure Flower federation (never overwrites).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tls", help="a throw-away CA and the SuperLink's certificate")
    t.add_argument("folder")
    t.add_argument(
        "--host",
        action="append",
        default=[],
        help="the SuperLink's address as SuperNodes reach it (IP or DNS name; repeatable); "
        "127.0.0.1 and localhost are always included",
    )
    t.add_argument("--days", type=int, default=30, help="validity in days (default 30)")
    k = sub.add_parser("node-keys", help="one EC key pair per SuperNode")
    k.add_argument("folder")
    k.add_argument("--nodes", type=int, required=True, help="how many SuperNodes")
    k.add_argument("--prefix", default="node", help="file names <prefix>-<i>[.pub]")
    args = p.parse_args(argv)
    try:
        if args.command == "tls":
            paths = make_tls(args.folder, args.host, args.days)
            print(f"wrote {', '.join(str(v) for v in paths.values())}")
            print(f"give {paths['ca']} to every SuperNode and flwr user; keep the keys secret")
        else:
            pairs = make_node_keys(args.folder, args.nodes, args.prefix)
            print(f"wrote {len(pairs)} key pairs in {args.folder}: {pairs[0][0].name}[.pub]...")
            print("register each .pub with `flwr supernode register`; give each node its key")
    except ConfigError as e:
        print(f"tinyproto.flower.secure: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
