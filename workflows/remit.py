"""Who may do what, and the proof of who is acting.

The API checks the remit at the edge; the project workflow checks it again in its Update validators, on an
attestation the edge signed (EdDSA) for that very decision. The workflow knows only the public keys (from its
input), so a caller who reaches Temporal directly cannot decide for another bank, nor replay an attestation for a
different decision or project.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

import jwt

from schemas.decisions import Decision, Institution
from schemas.identity import Identity, Role

ATTESTATION_AUDIENCE = "alliance-workflow"
ATTESTATION_ALGORITHM = "EdDSA"


class Action(StrEnum):
    propose = "propose"
    approve = "approve"
    reject = "reject"
    request_information = "request_information"
    provide_information = "provide_information"
    satisfy_condition = "satisfy_condition"
    complete_milestone = "complete_milestone"
    cancel = "cancel"
    read = "read"
    read_terms = "read_terms"
    inbox = "inbox"


INSTITUTION_ACTIONS = {Action.approve, Action.reject, Action.request_information, Action.inbox}

ALLOWED: dict[Role, set[Action]] = {
    Role.officer: {*INSTITUTION_ACTIONS, Action.read, Action.read_terms},
    Role.contractor: {
        Action.propose,
        Action.provide_information,
        Action.satisfy_condition,
        Action.complete_milestone,
        Action.cancel,
        Action.read,
        Action.read_terms,
    },
    Role.borrower: {Action.satisfy_condition, Action.read, Action.read_terms},
    Role.operator: {Action.cancel, Action.read, Action.read_terms, Action.inbox},
    Role.auditor: {Action.read, Action.read_terms},
    # Loan terms are confidential to the borrower and the institutions: partners read without them.
    Role.partner: {Action.read},
}


def refusal(identity: Identity, action: Action, institution: Institution | None = None) -> str | None:
    """Why `identity` may not do `action` (for `institution`), or None when it may."""
    if action not in ALLOWED[identity.role]:
        return f"{identity.person} ({identity.role.value}) may not {action.value.replace('_', ' ')}"
    if action in INSTITUTION_ACTIONS and identity.role is Role.officer and institution is not identity.institution:
        other = institution.display if institution else "another institution"
        own = identity.institution.display if identity.institution else identity.organisation
        return f"{identity.person} is an officer of {own} and cannot act for {other}"
    return None


def decision_digest(decision: Decision) -> str:
    """What an attestation vouches for, and what makes a decision id's re-send the same decision: the decision's
    content, without the attestation itself and without `based_on_sequence` (a precondition on when it applies, not
    part of what is decided: a retry after a timeout may carry a newer one and is still the same decision)."""
    return hashlib.sha256(decision.model_dump_json(exclude={"attestation", "based_on_sequence"}).encode()).hexdigest()


def attest(identity: Identity, project_id: str, decision: Decision, key: Any, now: datetime, seconds: int) -> str:
    """Signs, at the edge, that `identity` sends `decision` to `project_id`."""
    claims = {
        "aud": ATTESTATION_AUDIENCE,
        "sub": identity.person,
        "org": identity.organisation,
        "role": identity.role.value,
        "project": project_id,
        "decision": decision_digest(decision),
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + seconds,
    }
    return jwt.encode(claims, key, algorithm=ATTESTATION_ALGORITHM)


class NotAttested(ValueError):
    pass


def verify(decision: Decision, project_id: str, public_keys: list[str], now: datetime) -> Identity:
    """The identity an attestation proves for this decision; NotAttested says why not."""
    if not decision.attestation:
        raise NotAttested("the decision carries no attestation of who sends it; send it through the API or the CLI")
    for key in public_keys:
        try:
            claims = jwt.decode(
                decision.attestation,
                key,
                algorithms=[ATTESTATION_ALGORITHM],
                audience=ATTESTATION_AUDIENCE,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "sub", "org", "role", "project", "decision"],
                },
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as err:
            raise NotAttested(f"the decision's attestation is invalid: {err}") from err
        # Times are checked against workflow time (not this machine's clock), the same on every replay.
        if claims["exp"] < now.timestamp():
            raise NotAttested("the decision's attestation has expired; send the decision again")
        if claims["project"] != project_id:
            raise NotAttested(f"the attestation is for project {claims['project']}, not {project_id}")
        if claims["decision"] != decision_digest(decision):
            raise NotAttested("the attestation was made for a different decision")
        return Identity(person=claims["sub"], organisation=claims["org"], role=Role(claims["role"]))
    raise NotAttested("the decision's attestation is not signed by a trusted key")


def claimed(decision: Decision) -> Identity | None:
    """The identity in an attestation already verified by the validator (for recording who decided)."""
    if not decision.attestation:
        return None
    claims = jwt.decode(decision.attestation, options={"verify_signature": False})
    return Identity(person=claims["sub"], organisation=claims["org"], role=Role(claims["role"]))
