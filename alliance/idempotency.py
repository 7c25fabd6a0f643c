"""Idempotency keys as draft-ietf-httpapi-idempotency-key-header means them.

A key is bound to the fingerprint of the request that first used it: the resource it was sent to (method and path)
and the request's content. The same key with the same fingerprint returns the first result and changes nothing; the
same key with another body, or sent to another resource, is refused (HTTP 422) and changes nothing; the same key sent
again while its first request is still being processed is refused (HTTP 409), to be retried.

Where the binding is kept:
- a proposal's key and fingerprint are recorded with the project (its workflow's memo), durably: the project itself
  answers a repeat, whatever process asks;
- a decision's id is its key (the API requires `decision_id` to equal the header), and the project's workflow keeps
  the fingerprint of every decision it accepted: a different decision under a used id is refused there, durably;
- that a key already used for one resource is not reused for another (another project, a proposal and then a
  decision) is checked by this process's `KeyLedger`, per caller, for `LEDGER_HOURS`. It is kept in memory: behind
  several API replicas, or after a restart, the same key sent to another project is caught only by that project's
  own binding (it starts or decides there as a new request). Clients should use a fresh key (a UUID) per request.

A key binds only once the request changed something: a request refused before anything happened (invalid, not
permitted, refused by the project) leaves its key free for the corrected request.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import BaseModel

LEDGER_HOURS = 24
LEDGER_CAPACITY = 100_000


class KeyRefused(Exception):
    """The key cannot be used for this request; `kind` is `key_reused` (422) or `in_progress` (409)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def fingerprint(resource: str, request: BaseModel, exclude: set[str] | None = None) -> str:
    """SHA-256 (hex) of the resource ('POST /projects') and the request's canonical JSON (amounts in their canonical
    form, so '40000000' and '40000000.00' USD are the same request)."""
    body = request.model_dump_json(exclude=exclude)
    return hashlib.sha256(f"{resource}\n{body}".encode()).hexdigest()


def used_differently(key: str, resource: str) -> str:
    """The one wording of: this key was bound to another request to the same resource."""
    return (
        f"Idempotency-Key {key} was already used for a different request to {resource}; nothing was changed: "
        "send the changed request with a new key"
    )


def used_elsewhere(key: str, resource: str) -> str:
    """The one wording of: this key was bound to a request to another resource."""
    return (
        f"Idempotency-Key {key} was already used for {resource}; a key is used for one request only: send this one "
        "with a new key"
    )


@dataclass(frozen=True)
class Binding:
    resource: str
    fingerprint: str
    at: float


class KeyLedger:
    """Keys this process has seen, per caller: which resource and fingerprint each is bound to, and which are in
    flight. Bounded (`capacity` keys, oldest dropped first) and forgetting after `hours`."""

    def __init__(self, capacity: int = LEDGER_CAPACITY, hours: float = LEDGER_HOURS) -> None:
        self._bound: OrderedDict[tuple[str, str], Binding] = OrderedDict()
        self._in_flight: set[tuple[str, str]] = set()
        self._capacity = capacity
        self._seconds = hours * 3600

    @asynccontextmanager
    async def claim(
        self, caller: str, key: str, resource: str, print_: str, same_resource: bool = True
    ) -> AsyncIterator[None]:
        """Holds `key` for this request while it runs and binds it when the request succeeds. KeyRefused when the
        key is bound to another resource, or (with `same_resource`) to another request to this one, or is in
        flight. Without `same_resource` the resource itself answers that case (a project's decision ledger), so
        that the rule has one wording."""
        slot = (caller, key)
        now = time.monotonic()
        bound = self._bound.get(slot)
        if bound is not None and now - bound.at > self._seconds:
            del self._bound[slot]
            bound = None
        if bound is not None and bound.resource != resource:
            raise KeyRefused(used_elsewhere(key, bound.resource), "key_reused")
        if same_resource and bound is not None and bound.fingerprint != print_:
            raise KeyRefused(used_differently(key, resource), "key_reused")
        if slot in self._in_flight:
            raise KeyRefused(
                f"a request with Idempotency-Key {key} is still being processed; send it again once it has answered",
                "in_progress",
            )
        self._in_flight.add(slot)
        try:
            yield
        finally:
            self._in_flight.discard(slot)
        self._bound[slot] = Binding(resource, print_, now)
        self._bound.move_to_end(slot)
        while len(self._bound) > self._capacity:
            self._bound.popitem(last=False)
