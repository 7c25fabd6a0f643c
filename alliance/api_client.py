"""The CLI's way through the API (`alliance --api URL --token T ...`): the same `Operations` as the service bound to
a person (`alliance.projects.Acting`), over HTTP; the API identifies the person from the token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from alliance.projects import Filters, InboxPage, ProjectPage, Started, UserError
from schemas.decisions import AwaitProgress, Decision, Institution, Progress, Receipt
from schemas.proposal import Proposal
from schemas.status import ProjectStatus
from workflows import catalogue

KINDS = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "unknown",
    409: "refused",
    412: "precondition_failed",
    422: "invalid",
}


@dataclass
class ApiProjects:
    base_url: str
    token: str | None

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Any:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if key:
            sent["Idempotency-Key"] = key
        sent |= headers or {}
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=timeout) as http:
                response = await http.request(method, path, json=body, headers=sent, params=params)
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

    async def decide(self, project_id: str, decision: Decision, wait: float | None = None) -> Receipt:
        path = f"/projects/{project_id}/{catalogue.kind_of(decision).route}"
        body = decision.model_dump(mode="json", exclude={"attestation"})
        headers = {"Prefer": f"wait={wait:g}"} if wait is not None else {}
        answer = await self._call(
            "POST", path, body, key=decision.decision_id, headers=headers, timeout=(wait or 30) + 30
        )
        return Receipt.model_validate(answer)

    async def status(self, project_id: str) -> ProjectStatus:
        return ProjectStatus.model_validate(await self._call("GET", f"/projects/{project_id}"))

    async def await_progress(self, project_id: str, wait: AwaitProgress) -> Progress:
        params: dict[str, Any] = {"timeout_seconds": min(wait.timeout_seconds, 60)}
        if wait.min_sequence is not None:
            params["min_sequence"] = wait.min_sequence
        if wait.stages:
            params["stage"] = [stage.value for stage in wait.stages]
        answer = await self._call(
            "GET", f"/projects/{project_id}/progress", params=params, timeout=wait.timeout_seconds + 60
        )
        return Progress.model_validate(answer)

    async def page(self, filters: Filters, page_size: int, page_token: str | None) -> ProjectPage:
        params = {k: v for k, v in vars(filters).items() if v} | {"page_size": page_size}
        if page_token:
            params["page_token"] = page_token
        return ProjectPage.model_validate(await self._call("GET", "/projects", params=params))

    async def inbox(self, institution: Institution, page_size: int, page_token: str | None) -> InboxPage:
        params: dict[str, Any] = {"page_size": page_size} | ({"page_token": page_token} if page_token else {})
        answer = await self._call("GET", f"/institutions/{institution.value}/inbox", params=params)
        return InboxPage.model_validate(answer)
