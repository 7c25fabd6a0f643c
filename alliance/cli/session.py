"""How a command reaches projects. The person is the token's (`--token` / ALLIANCE_TOKEN), passed explicitly to
every command through typer's context; the way in is the application service bound to that person (`Acting`,
straight to Temporal, decisions attested with this machine's key), or the API (`--api URL`), which does the same on
its side. Either way the same `Operations`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import jwt
import typer

from alliance.api_client import ApiProjects
from alliance.connections import connect_temporal
from alliance.projects import Acting, Operations, Projects, UserError
from alliance.settings import Settings, get_settings
from alliance.tokens import CredentialError, Edge

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass(frozen=True)
class Session:
    """Who runs this command and where it goes: directly to Temporal, or through the API (`--api`)."""

    token: str | None = None
    api: str | None = None

    def person(self) -> str | None:
        """The person the token names, for the decision's name fields (the edge verifies the token itself)."""
        if not self.token:
            return None
        try:
            return str(jwt.decode(self.token, options={"verify_signature": False}).get("sub")) or None
        except jwt.PyJWTError:
            return None

    async def operations(self, settings: Settings) -> Operations:
        if self.api:
            return ApiProjects(self.api, self.token)
        projects = await connect(settings)
        assert projects.edge is not None
        try:
            actor = projects.edge.identify(self.token)
        except CredentialError as err:
            raise UserError(f"{err} (pass --token or set ALLIANCE_TOKEN)", "unauthenticated") from err
        return Acting(projects, actor)

    def act(self, action: Callable[[Operations], Awaitable[T]]) -> T:
        async def go() -> T:
            return await action(await self.operations(get_settings()))

        return run(go())


def session(ctx: typer.Context) -> Session:
    found = ctx.find_object(Session)
    return found if found is not None else Session()


async def connect(settings: Settings) -> Projects:
    """The application service on this machine's Temporal client and keys."""
    try:
        client = await connect_temporal(settings)
    except RuntimeError as err:
        raise UserError(
            f"cannot reach the Temporal server at {settings.temporal_address} ({err}); "
            "start it with `alliance dev` or `deploy/local/services.sh start`"
        ) from err
    return Projects(client, settings, Edge(settings))
