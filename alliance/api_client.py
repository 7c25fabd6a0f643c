"""The CLI's way through the API (`alliance --api URL --token T ...`): the same operations as `Projects`, over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import TypeAdapter

from alliance.projects import ProjectRow, Started, UserError
from schemas.decisions import Decision, Receipt
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
from workflows import catalogue

KINDS = {401: "unauthenticated", 403: "forbidden", 404: "unknown", 409: "refused", 422: "invalid"}


@dataclass
class ApiProjects:
    base_url: str
    token: str | None

    async def _call(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if key:
            headers["Idempotency-Key"] = key
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as http:
                response = await http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as err:
            raise UserError(f"cannot reach the API at {self.base_url}: {err}", "unavailable") from err
        if response.status_code >= 400:
            kind = KINDS.get(response.status_code, "unavailable")
            try:
                problem = response.json()
                message, kind = str(problem["message"]), str(problem.get("code") or kind)
            except (ValueError, KeyError, TypeError):
                message = f"the API answered {response.status_code}: {response.text[:200]}"
            raise UserError(message, kind)
        return response.json()

    async def propose(self, proposal: Proposal) -> Started:
        started = await self._call("POST", "/projects", proposal.model_dump(mode="json"), key=proposal.project_id)
        return Started.model_validate(started)

    async def decide(self, project_id: str, decision: Decision) -> Receipt:
        path = f"/projects/{project_id}/{catalogue.kind_of(decision).route}"
        body = decision.model_dump(mode="json", exclude={"attestation"})
        return Receipt.model_validate(await self._call("POST", path, body, key=decision.decision_id))

    async def status(self, project_id: str) -> ProjectStatus:
        return ProjectStatus.model_validate(await self._call("GET", f"/projects/{project_id}"))

    async def list(self, **filters: str | None) -> list[ProjectRow]:
        query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
        rows = await self._call("GET", "/projects" + (f"?{query}" if query else ""))
        return TypeAdapter(list[ProjectRow]).validate_python(rows)
