"""Password authentication for the PostgreSQL endpoint: SCRAM-SHA-256 (RFC 5802/7677) and md5.

The server keeps only SCRAM's derived keys and the md5 hash, never comparing
plain passwords; every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field

SCRAM_ITERATIONS = 4096


class AuthFailed(Exception):
    """The client did not prove it knows the password."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class Credentials:
    """The one user the endpoint accepts and what is derived from its password."""

    user: str
    salt: bytes
    stored_key: bytes
    server_key: bytes
    md5_hash: str  # md5(password + user), as PostgreSQL stores it

    @classmethod
    def from_password(cls, user: str, password: str) -> Credentials:
        """`user`'s credentials for `password`, with a fresh random salt: what a server keeps
        to check either authentication method without keeping the password."""
        salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
        client_key = _hmac(salted, b"Client Key")
        return cls(
            user=user,
            salt=salt,
            stored_key=hashlib.sha256(client_key).digest(),
            server_key=_hmac(salted, b"Server Key"),
            md5_hash=hashlib.md5((password + user).encode()).hexdigest(),
        )

    def check_md5(self, salt: bytes, response: str) -> None:
        """Verify an md5 PasswordMessage (`md5` + md5(md5hash + salt))."""
        expected = "md5" + hashlib.md5(self.md5_hash.encode() + salt).hexdigest()
        if not hmac.compare_digest(expected, response):
            raise AuthFailed()


def _attributes(message: str) -> dict[str, str]:
    out = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise AuthFailed()
        out[part[0]] = part[2:]
    return out


@dataclass
class ScramExchange:
    """Server side of one SCRAM-SHA-256 exchange (no channel binding)."""

    credentials: Credentials
    server_nonce: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    client_first_bare: str = ""
    server_first: str = ""

    def first(self, client_first: str) -> str:
        """Take the client-first-message; return the server-first-message."""
        gs2, _, bare = client_first.partition(",")
        if gs2 not in ("n", "y"):  # "p" would demand channel binding we do not offer
            raise AuthFailed()
        _authzid, _, bare = bare.partition(",")
        attrs = _attributes(bare)
        if "r" not in attrs:
            raise AuthFailed()
        self.client_first_bare = bare
        nonce = attrs["r"] + self.server_nonce
        salt = base64.b64encode(self.credentials.salt).decode()
        self.server_first = f"r={nonce},s={salt},i={SCRAM_ITERATIONS}"
        return self.server_first

    def final(self, client_final: str) -> str:
        """Verify the client-final-message's proof; return the server-final-message."""
        without_proof, _, proof_part = client_final.rpartition(",p=")
        attrs = _attributes(without_proof)
        if not attrs.get("r", "").endswith(self.server_nonce):
            raise AuthFailed()
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise AuthFailed() from None
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = _hmac(self.credentials.stored_key, auth_message)
        if len(proof) != len(signature):
            raise AuthFailed()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(
            hashlib.sha256(client_key).digest(), self.credentials.stored_key
        ):
            raise AuthFailed()
        verifier = _hmac(self.credentials.server_key, auth_message)
        return "v=" + base64.b64encode(verifier).decode()
