"""Calls between the services on aiohttp, where a call is on every salad's or fruit's way.

Not httpx (kept for the CLI and the calls off those paths): its pure-Python request path costs the client
several times aiohttp's CPU per call (`python -m bench.roundtrip` measures both), and a worker makes one or
two calls per fruit; Master two per batch of orders it takes from Shared.
"""

from dataclasses import dataclass

import aiohttp


class CallFailed(Exception):
    """The other service answered with an error status the caller cannot go on from."""


@dataclass(frozen=True)
class Answer:
    """A response read in full: aiohttp's own is only valid while its connection is held."""

    status: int
    content: bytes

    def raise_for_status(self, what: str) -> None:
        if self.status >= 400:
            raise CallFailed(f"{what}: HTTP {self.status} {self.content[:200].decode(errors='replace')}")


def session(timeout_seconds: float, headers: dict[str, str]) -> aiohttp.ClientSession:
    """A keep-alive session (create it inside the event loop that will use it)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds), headers=headers)


async def send(http: aiohttp.ClientSession, method: str, url: str, body: dict | None = None) -> Answer:
    async with http.request(method, url, json=body) as response:
        return Answer(response.status, await response.read())
