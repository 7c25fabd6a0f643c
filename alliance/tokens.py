"""Credentials at the edge: bearer tokens for callers, attestations for the workflow.

- A bearer token (EdDSA JWT, audience `ALLIANCE_TOKEN_AUDIENCE`) names a person, an organisation and a role. The API
  verifies it with the keys of `ALLIANCE_TOKEN_PUBLIC_KEYS_FILE` (default: the local signing key's public half).
- For each decision the edge (API or CLI) signs an attestation with `ALLIANCE_SIGNING_KEY_FILE`: this identity sends
  this decision to this project. Projects started here trust that key's public half (in their workflow input).
- `alliance token issue` makes tokens for local use with the signing key, which is created on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from alliance.settings import Settings
from schemas.decisions import Decision
from schemas.identity import Identity, Role
from workflows import remit

ALGORITHM = "EdDSA"


class CredentialError(Exception):
    """A missing, expired, tampered or foreign credential; the message says which."""


def _load_or_create(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CredentialError(f"{path} is not an Ed25519 private key")
    return key


def _public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _split_pems(text: str) -> list[str]:
    end = "-----END PUBLIC KEY-----"
    return [part.strip() + "\n" + end + "\n" for part in text.split(end) if part.strip()]


class Edge:
    """The keys of this edge (API or CLI), loaded once."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.clock = clock  # attestations expire by workflow time, which a time-skipping test server runs ahead
        self._key = _load_or_create(settings.signing_key_file)
        self.public_pem = _public_pem(self._key)
        if settings.token_public_keys_file is not None:
            self.token_keys = _split_pems(settings.token_public_keys_file.read_text())
        else:
            self.token_keys = [self.public_pem]

    def issue(self, identity: Identity, minutes: int = 60, now: datetime | None = None) -> str:
        issued = now or datetime.now(UTC)
        claims = {
            "iss": self.settings.token_issuer,
            "aud": self.settings.token_audience,
            "sub": identity.person,
            "org": identity.organisation,
            "role": identity.role.value,
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(minutes=minutes)).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def identify(self, token: str | None) -> Identity:
        """The identity a bearer token proves; CredentialError when it proves none."""
        if not token:
            raise CredentialError("no credential: send 'Authorization: Bearer <token>' (alliance token issue ...)")
        problem = "it is not signed by a trusted key"
        for key in self.token_keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    audience=self.settings.token_audience,
                    issuer=self.settings.token_issuer,
                    options={"require": ["exp", "sub", "org", "role", "aud", "iss"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError as err:
                raise CredentialError("the token has expired") from err
            except jwt.InvalidAudienceError as err:
                raise CredentialError(
                    f"the token is not for this service (audience {self.settings.token_audience})"
                ) from err
            except jwt.PyJWTError as err:
                problem = str(err)
                break
            try:
                return Identity(person=claims["sub"], organisation=claims["org"], role=Role(claims["role"]))
            except (ValueError, ValidationError) as err:
                raise CredentialError(f"the token names no valid identity: {err}") from err
        raise CredentialError(f"the token is not valid: {problem}")

    def attest(self, identity: Identity, project_id: str, decision: Decision) -> Decision:
        """The decision with the edge's attestation that `identity` sends it to `project_id`."""
        unsigned = decision.model_copy(update={"attestation": None})
        token = remit.attest(identity, project_id, unsigned, self._key, self.clock(), self.settings.attestation_seconds)
        return decision.model_copy(update={"attestation": token})
