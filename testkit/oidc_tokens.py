"""Real signing keys and JWTs for the oidc tests, and a JWKS served from 127.0.0.1.

Tokens are minted with PyJWT and RSA (RS256), EC P-256 (ES256) and Ed25519 (EdDSA) keys.
The attacks are built by hand where PyJWT (rightly) refuses to build them: an HS256 token
whose secret is the issuer's public key, an `alg: none` token, a payload changed after
signing.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ipaddress
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://issuer.agentdbg.test"
AUDIENCE = "agentdbg"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        return {**algorithm.to_jwk(self.public, as_dict=True), "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> str:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def mint(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers})

    def sign_any(self, payload: Any) -> str:
        """A signed token of any JSON payload, even claims PyJWT would refuse to encode."""
        return jwt.PyJWS().encode(json.dumps(payload, default=str).encode(), self.private, algorithm=self.alg,
                                  headers={"kid": self.kid})


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def ed_key(kid: str = "ed-1") -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def claims(now: float | None = None, **changes: Any) -> dict[str, Any]:
    """Claims of a valid token issued now for five minutes; `changes` replace (None: remove) claims."""
    now = time.time() if now is None else now
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "agent-7", "iat": int(now), "exp": int(now) + 300}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


def hs256_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC-SHA256 keyed with the issuer's public key PEM."""
    signing_input = _segments({"alg": "HS256", "typ": "JWT", "kid": key.kid}, payload)
    signature = hmac.new(key.public_pem().encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def unsigned(payload: dict[str, Any], kid: str = "rsa-1") -> str:
    """`alg: none`, an empty signature."""
    return f"{_segments({'alg': 'none', 'typ': 'JWT', 'kid': kid}, payload)}."


def tampered(token: str, **changes: Any) -> str:
    """`token` with its payload changed after signing (the signature kept)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(changes)
    return f"{header}.{_b64(json.dumps(decoded).encode())}.{signature}"


def with_header(token: str, **changes: Any) -> str:
    """`token` with header fields changed after signing (the payload and signature kept)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    decoded.update(changes)
    return f"{_b64(json.dumps(decoded).encode())}.{payload}.{signature}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class JwksServer:
    """An issuer's JWKS (and discovery document) on 127.0.0.1; `keys` can be swapped to rotate."""

    def __init__(self, keys: list[SigningKey], tls: ssl.SSLContext | None = None) -> None:
        self.keys = list(keys)
        self.requests = 0
        self.status = 200  # set another to make the issuer fail
        self.padding = 0  # bytes of padding added to the JWKS, to make it too large
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests += 1
                if server.status != 200:
                    self.send_error(server.status)
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": server.issuer, "jwks_uri": server.url}
                elif self.path == "/jwks":
                    body = {"keys": [key.jwk() for key in server.keys], "padding": "x" * server.padding}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.issuer = f"{'https' if tls else 'http'}://127.0.0.1:{self._httpd.server_address[1]}"
        self.url = f"{self.issuer}/jwks"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "JwksServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def tls_for_127_0_0_1(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a self-signed certificate for 127.0.0.1, and the certificate's file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.agentdbg.test")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "issuer.pem", directory / "issuer-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
