"""Bearer tokens: who may call which route.

Three kinds of caller, each with its own token: clients (public API), workers (Master's task API) and
Master (Shared's /internal API). An unknown or missing token gets 401; a valid token of another kind
gets 403. Tokens are compared in constant time and never logged.
"""

import hmac
import logging
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

log = logging.getLogger(__name__)


def bearer_header(token: str | SecretStr | None) -> dict[str, str]:
    """The Authorization header a caller sends with `token`; none without one (authentication off)."""
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    return {"Authorization": f"Bearer {token}"} if token else {}


class Role(StrEnum):
    CLIENT = "client"
    WORKER = "worker"
    MASTER = "master"


class Tokens:
    """The tokens a service accepts, by role. Empty means authentication is off."""

    def __init__(self, **by_role: SecretStr | None) -> None:
        self.by_role = {Role(role): secret.get_secret_value().encode()
                        for role, secret in by_role.items() if secret and secret.get_secret_value()}
        if not self.by_role:
            log.warning("authentication is off: no SALAD_*_TOKEN is set")

    @property
    def enabled(self) -> bool:
        return bool(self.by_role)

    def role_of(self, token: str) -> Role | None:
        presented = token.encode()
        found = None
        for role, expected in self.by_role.items():  # compare with every token: time does not tell which
            if hmac.compare_digest(presented, expected):
                found = role
        return found


bearer = HTTPBearer(auto_error=False, description="A token of the caller's kind (client, worker or master).")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def check(request: Request, credentials: HTTPAuthorizationCredentials | None, *roles: Role) -> None:
    """Admit a caller holding a token of one of `roles`."""
    tokens: Tokens = request.app.state.tokens
    if not tokens.enabled:
        return
    if credentials is None:
        raise HTTPException(401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    presented = tokens.role_of(credentials.credentials)
    if presented is None:
        raise HTTPException(401, detail="invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    if presented not in roles:
        needed = " or ".join(roles)
        raise HTTPException(403, detail=f"a {presented} token may not call this route; it needs a {needed} token")


class BearerOf(HTTPBearer):
    """Admits only callers holding a token of one of `roles`; with `open_flag`, the name of a boolean in
    app.state.settings, everyone while it is true (seed routes).

    A bearer scheme itself, so OpenAPI documents it as the `bearer` dependency did, in one dependency: a
    check depending on `bearer` cost FastAPI a second level of dependency solving on every request (4 us of
    a check-in's 108, measured in-process). Async though it awaits nothing slow: FastAPI runs a plain
    function in its thread pool.
    """

    def __init__(self, roles: tuple[Role, ...], open_flag: str | None = None) -> None:
        super().__init__(auto_error=False, scheme_name=bearer.scheme_name,
                         description=bearer.model.description)
        self.roles, self.open_flag = roles, open_flag

    async def __call__(self, request: Request) -> None:
        if self.open_flag and getattr(request.app.state.settings, self.open_flag):
            return
        check(request, await super().__call__(request), *self.roles)


def require(*roles: Role, open_flag: str | None = None):
    """A dependency that admits only callers holding a token of one of `roles` (see BearerOf)."""
    return Depends(BearerOf(roles, open_flag))
