"""Bearer tokens as identity providers issue them: clocks that drift, keys chosen by kid and type, key rotation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from alliance.demo import CONTRACTOR
from alliance.settings import Settings
from alliance.tokens import CredentialError, Edge, thumbprint

pytestmark = pytest.mark.timeout(60)


def pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(key: Any, **extra: Any) -> dict[str, Any]:
    kind = {Ed25519PrivateKey: OKPAlgorithm, rsa.RSAPrivateKey: RSAAlgorithm, ec.EllipticCurvePrivateKey: ECAlgorithm}
    algorithm = next(a for t, a in kind.items() if isinstance(key, t))
    return json.loads(algorithm.to_jwk(key.public_key())) | extra


def claims(now: datetime, **changes: Any) -> dict[str, Any]:
    return {
        "iss": "alliance-local",
        "aud": "alliance-api",
        "sub": "Zhang Min",
        "org": "inspur",
        "role": "contractor",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=10)).timestamp()),
    } | changes


def sign(key: Any, algorithm: str, now: datetime | None = None, kid: str | None = None, **changes: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(now or datetime.now(UTC), **changes), key, algorithm=algorithm, headers=headers)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, signing_key_file=tmp_path / "edge.pem")  # type: ignore[call-arg]


def with_keys(settings: Settings, path: Path, text: str, **changes: Any) -> Edge:
    path.write_text(text)
    return Edge(settings.model_copy(update={"token_public_keys_file": path, **changes}))


def refusal(edge: Edge, token: str) -> str:
    with pytest.raises(CredentialError) as refused:
        edge.identify(token)
    message = str(refused.value)
    assert "<" not in message and "object at" not in message and "generator" not in message, message
    return message


def test_clocks_may_drift_by_the_leeway_and_no_more(settings: Settings) -> None:
    edge = Edge(settings)
    now = datetime.now(UTC)
    assert edge.identify(edge.issue(CONTRACTOR, now=now + timedelta(seconds=2))) == CONTRACTOR
    assert edge.identify(edge.issue(CONTRACTOR, now=now + timedelta(seconds=50))) == CONTRACTOR
    ahead = refusal(edge, edge.issue(CONTRACTOR, now=now + timedelta(seconds=120)))
    assert ahead == "the token is not yet valid (issued or valid from more than 60 s ahead of this clock)"
    # Expired 30 s ago: within the leeway. Expired 2 minutes ago: refused.
    assert edge.identify(edge.issue(CONTRACTOR, minutes=1, now=now - timedelta(seconds=90))) == CONTRACTOR
    assert refusal(edge, edge.issue(CONTRACTOR, minutes=1, now=now - timedelta(minutes=3))) == "the token has expired"
    strict = Edge(settings.model_copy(update={"token_leeway_seconds": 0}))
    assert "not yet valid" in refusal(strict, strict.issue(CONTRACTOR, now=now + timedelta(seconds=5)))


def test_a_key_of_another_type_before_the_right_one_changes_nothing(settings: Settings, tmp_path: Path) -> None:
    ours, theirs = Ed25519PrivateKey.generate(), rsa.generate_private_key(public_exponent=65537, key_size=2048)
    edge = with_keys(settings, tmp_path / "keys.pem", pem(theirs) + pem(ours))
    assert edge.identify(sign(ours, "EdDSA")) == CONTRACTOR
    # Both are trusted keys: an RSA-signed token verifies with the RSA key (RS256), as identity providers sign.
    assert edge.identify(sign(theirs, "RS256")) == CONTRACTOR
    # A token signed by neither is refused in words, whatever the key types.
    stranger = Ed25519PrivateKey.generate()
    assert refusal(edge, sign(stranger, "EdDSA")) == "the token is not valid: it is not signed by a trusted key"
    assert refusal(edge, sign(b"a-shared-secret-of-enough-length-32", "HS256")) == (
        "the token is signed with HS256; this service accepts EdDSA, PS256, PS384, PS512, RS256, RS384, RS512"
    )
    assert refusal(edge, "not-a-token") == "the token is not valid: it is not a well-formed JWT"


def test_keys_are_chosen_by_kid_and_rotated(settings: Settings, tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())
    both = {"keys": [jwk(old, kid="2026-01", use="sig"), jwk(new, kid="2026-07", alg="ES256")]}
    edge = with_keys(settings, tmp_path / "jwks.json", json.dumps(both))
    assert edge.identify(sign(old, "EdDSA", kid="2026-01")) == CONTRACTOR
    assert edge.identify(sign(new, "ES256", kid="2026-07")) == CONTRACTOR
    # A kid names one key: a token whose kid names the other key does not verify with it.
    assert refusal(edge, sign(old, "EdDSA", kid="2026-07")) == (
        "the token names key 2026-07, which verifies ES256, not EdDSA"
    )
    # The old key retired: its tokens are refused as such; the new key's still pass.
    retired = with_keys(settings, tmp_path / "jwks.json", json.dumps({"keys": [both["keys"][1]]}))
    assert refusal(retired, sign(old, "EdDSA", kid="2026-01")) == (
        "the token is signed with EdDSA; this service accepts ES256"
    )
    assert retired.identify(sign(new, "ES256", kid="2026-07")) == CONTRACTOR
    two_ec = ec.generate_private_key(ec.SECP256R1())
    rotated = with_keys(
        settings, tmp_path / "jwks.json", json.dumps({"keys": [jwk(two_ec, kid="2027-01"), both["keys"][1]]})
    )
    assert refusal(rotated, sign(new, "ES256", kid="2026-01")) == (
        "the token's signing key 2026-01 is not trusted here (unknown, or retired by a key rotation)"
    )
    assert rotated.identify(sign(two_ec, "ES256", kid="2027-01")) == CONTRACTOR


def test_a_pem_keys_kid_is_its_thumbprint_and_local_tokens_name_it(settings: Settings, tmp_path: Path) -> None:
    edge = Edge(settings)
    token = edge.issue(CONTRACTOR)
    assert jwt.get_unverified_header(token)["kid"] == edge.kid
    public = serialization.load_pem_public_key(edge.public_pem.encode())
    assert edge.kid == thumbprint(json.loads(OKPAlgorithm.to_jwk(public)))
    other = Ed25519PrivateKey.generate()
    trusting = with_keys(settings, tmp_path / "keys.pem", pem(other) + edge.public_pem)
    assert trusting.identify(token) == CONTRACTOR


def test_keys_of_other_types_are_left_out_and_a_file_without_usable_keys_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    usable = Ed25519PrivateKey.generate()
    mixed = {
        "keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"},
            jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="enc", use="enc"),
            jwk(usable, kid="sig"),
        ]
    }
    edge = with_keys(settings, tmp_path / "jwks.json", json.dumps(mixed))
    assert [k.kid for k in edge.token_keys] == ["sig"]
    assert edge.identify(sign(usable, "EdDSA", kid="sig")) == CONTRACTOR
    with pytest.raises(CredentialError) as refused:
        with_keys(settings, tmp_path / "jwks.json", json.dumps({"keys": mixed["keys"][:2]}))
    message = str(refused.value)
    assert (
        message.startswith("ALLIANCE_TOKEN_PUBLIC_KEYS_FILE: ")
        and "has no key that verifies token signatures" in message
    )
    assert "a key of type oct" in message and "a key for enc" in message
    with pytest.raises(CredentialError, match="is not a JWKS document"):
        with_keys(settings, tmp_path / "jwks.json", '{"kids": []}')
