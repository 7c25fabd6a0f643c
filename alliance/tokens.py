"""Credentials at the edge: bearer tokens for callers, attestations for the workflow.

- A bearer token (a JWT, audience `ALLIANCE_TOKEN_AUDIENCE`, issuer `ALLIANCE_TOKEN_ISSUER`) names a person, an
  organisation and a role. The API verifies it with the trusted keys of `ALLIANCE_TOKEN_PUBLIC_KEYS_FILE` (default:
  the local signing key's public half): a JWKS document (`{"keys": [...]}`, as identity providers publish it) or PEM
  public keys. The key is chosen by the token's `kid` (a PEM key's kid is its RFC 7638 thumbprint) and must be of the
  type the token's `alg` needs: Ed25519 (EdDSA), RSA (RS256/384/512, PS256/384/512) or EC P-256/384/521
  (ES256/384/512). Keys of other types (shared secrets, encryption keys) are left out with a warning at start-up; a
  file with no usable key is refused at start-up. Times (`exp`, `nbf`, `iat`) are checked with a leeway of
  `ALLIANCE_TOKEN_LEEWAY_SECONDS` (default 60), since identity providers' clocks drift.
- Key rotation: add the new key to the file (both are trusted), let the identity provider sign with it, and remove
  the old one once the last token it signed has expired; restart the API after each change of the file.
- For each decision the edge (API or CLI) signs an attestation with `ALLIANCE_SIGNING_KEY_FILE`: this identity sends
  this decision to this project. Projects started here trust that key's public half (in their workflow input).
- `alliance token issue` makes tokens for local use with the signing key, which is created on first use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from alliance.settings import Settings
from schemas.decisions import Decision
from schemas.identity import Identity, Role
from workflows import remit

ALGORITHM = "EdDSA"
log = structlog.get_logger(__name__)


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


# The JWS algorithms each key type verifies (RFC 7518, RFC 8037).
ALGORITHMS_OF = {
    "OKP": ("EdDSA",),
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
}
# RFC 7638: the members a key's thumbprint is computed from, per key type.
THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of a key that names none."""
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class TrustedKey:
    """A public key tokens may be signed with: its kid, the algorithms it verifies, and where it came from."""

    kid: str
    algorithms: tuple[str, ...]
    key: Any
    source: str


def _public_jwk(key: Any) -> dict[str, Any]:
    if isinstance(key, Ed25519PublicKey):
        jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(key))
    elif isinstance(key, RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(key))
    elif isinstance(key, EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(key))
    else:
        raise ValueError(type(key).__name__)
    return jwk


def load_trusted_keys(path: Path) -> tuple[list[TrustedKey], list[str]]:
    """The usable keys of a JWKS document or a PEM bundle, and a line for each key left out (its type, or its use,
    is not for verifying signatures). CredentialError when the file cannot be read or has no usable key."""
    try:
        text = path.read_text()
    except OSError as err:
        raise CredentialError(f"ALLIANCE_TOKEN_PUBLIC_KEYS_FILE: cannot read {path}: {err.strerror}") from err
    keys: list[TrustedKey] = []
    skipped: list[str] = []
    if text.lstrip().startswith("{"):
        try:
            entries = json.loads(text)["keys"]
            assert isinstance(entries, list)
        except (ValueError, KeyError, TypeError, AssertionError) as err:
            raise CredentialError(
                f'ALLIANCE_TOKEN_PUBLIC_KEYS_FILE: {path} is not a JWKS document ({{"keys": [...]}})'
            ) from err
        for n, jwk in enumerate(entries, start=1):
            if not isinstance(jwk, dict):
                skipped.append(f"{path} key {n}: not a JSON object")
                continue
            where = f"{path} key {n}" + (f" (kid {jwk['kid']})" if "kid" in jwk else "")
            if jwk.get("kty") not in ALGORITHMS_OF:
                skipped.append(f"{where}: a key of type {jwk.get('kty')} does not verify token signatures here")
                continue
            if jwk.get("use", "sig") != "sig":
                skipped.append(f"{where}: a key for {jwk.get('use')}, not for signatures")
                continue
            try:
                parsed = PyJWK(jwk)
            except jwt.PyJWTError as err:
                skipped.append(f"{where}: not a usable public key ({type(err).__name__})")
                continue
            algorithms = tuple(a for a in ALGORITHMS_OF[jwk["kty"]] if a == jwk.get("alg", a))
            keys.append(TrustedKey(str(jwk.get("kid") or thumbprint(jwk)), algorithms, parsed.key, where))
    else:
        for n, pem in enumerate(_split_pems(text), start=1):
            where = f"{path} key {n}"
            try:
                public = serialization.load_pem_public_key(pem.encode())
            except ValueError:
                skipped.append(f"{where}: not a PEM public key")
                continue
            try:
                jwk = _public_jwk(public)
            except ValueError:
                skipped.append(f"{where}: a {type(public).__name__} does not verify token signatures here")
                continue
            keys.append(TrustedKey(thumbprint(jwk), ALGORITHMS_OF[jwk["kty"]], public, where))
    if not keys:
        raise CredentialError(
            f"ALLIANCE_TOKEN_PUBLIC_KEYS_FILE: {path} has no key that verifies token signatures (Ed25519, RSA or EC "
            "public keys, as PEM or JWKS)" + (f"; left out: {'; '.join(skipped)}" if skipped else "")
        )
    return keys, skipped


class Edge:
    """The keys of this edge (API or CLI), loaded once."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.clock = clock  # attestations expire by workflow time, which a time-skipping test server runs ahead
        self._key = _load_or_create(settings.signing_key_file)
        self.public_pem = _public_pem(self._key)
        self.kid = thumbprint(_public_jwk(self._key.public_key()))
        if settings.token_public_keys_file is not None:
            self.token_keys, skipped = load_trusted_keys(settings.token_public_keys_file)
            for line in skipped:
                log.warning("token_key_left_out", reason=line)
        else:
            self.token_keys = [TrustedKey(self.kid, ("EdDSA",), self._key.public_key(), "the local signing key")]

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
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def identify(self, token: str | None) -> Identity:
        """The identity a bearer token proves; CredentialError (its message safe to show the caller) when it proves
        none."""
        if not token:
            raise CredentialError("no credential: send 'Authorization: Bearer <token>' (alliance token issue ...)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise CredentialError("the token is not valid: it is not a well-formed JWT") from err
        algorithm, kid = header.get("alg"), header.get("kid")
        accepted = sorted({a for k in self.token_keys for a in k.algorithms})
        if algorithm not in accepted:
            raise CredentialError(f"the token is signed with {algorithm}; this service accepts {', '.join(accepted)}")
        candidates = [k for k in self.token_keys if algorithm in k.algorithms and (kid is None or k.kid == kid)]
        named = next((k for k in self.token_keys if kid is not None and k.kid == kid), None)
        if not candidates and named is not None:
            raise CredentialError(
                f"the token names key {kid}, which verifies {', '.join(named.algorithms)}, not {algorithm}"
            )
        if not candidates:
            raise CredentialError(
                f"the token's signing key {kid} is not trusted here (unknown, or retired by a key rotation)"
                if kid
                else f"the token is not valid: no trusted {algorithm} key"
            )
        for trusted in candidates:
            try:
                claims = jwt.decode(
                    token,
                    trusted.key,
                    algorithms=[str(algorithm)],
                    audience=self.settings.token_audience,
                    issuer=self.settings.token_issuer,
                    leeway=self.settings.token_leeway_seconds,
                    options={"require": ["exp", "sub", "org", "role", "aud", "iss"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as err:
                raise CredentialError(self._explain(err)) from err
            try:
                return Identity(person=claims["sub"], organisation=claims["org"], role=Role(claims["role"]))
            except (ValueError, ValidationError) as err:
                raise CredentialError("the token names no valid identity (sub, org, role)") from err
        raise CredentialError("the token is not valid: it is not signed by a trusted key")

    def _explain(self, err: jwt.PyJWTError) -> str:
        """A verification failure in the caller's words; never the library's internal text."""
        leeway = self.settings.token_leeway_seconds
        if isinstance(err, jwt.ExpiredSignatureError):
            return "the token has expired"
        if isinstance(err, jwt.ImmatureSignatureError):
            return f"the token is not yet valid (issued or valid from more than {leeway} s ahead of this clock)"
        if isinstance(err, jwt.InvalidAudienceError):
            return f"the token is not for this service (audience {self.settings.token_audience})"
        if isinstance(err, jwt.InvalidIssuerError):
            return f"the token is not from the trusted issuer ({self.settings.token_issuer})"
        if isinstance(err, jwt.MissingRequiredClaimError):
            return f"the token has no '{err.claim}' claim"
        if isinstance(err, jwt.InvalidIssuedAtError):
            return "the token's 'iat' claim is not a time"
        return "the token is not valid: its signature or format cannot be verified"

    def attest(self, identity: Identity, project_id: str, decision: Decision) -> Decision:
        """The decision with the edge's attestation that `identity` sends it to `project_id`."""
        unsigned = decision.model_copy(update={"attestation": None})
        token = remit.attest(identity, project_id, unsigned, self._key, self.clock(), self.settings.attestation_seconds)
        return decision.model_copy(update={"attestation": token})
