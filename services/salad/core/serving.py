"""uvicorn's server, telling the app the moment it starts to shut down.

uvicorn tells an app it stops (lifespan shutdown) only once every open request is answered. Master's open
requests are mostly long-polls that wait for tasks up to SALAD_MAX_CLAIM_WAIT: told only then, it kept its
workers waiting for nothing, and its restart, for as long. An app registers with `when_stopping` what to do
once the server has stopped accepting connections and asked the open ones to close after their answer
(Master answers its long-polls, with no task: its workers claim again elsewhere, or once it is back).
"""

import asyncio
import socket
from collections.abc import Callable

import uvicorn

_on_shutdown: list[Callable[[], None]] = []


def when_stopping(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` on the running event loop when the server starts to shut down. Returns what
    unregisters it (the app's lifespan ends)."""
    _on_shutdown.append(callback)
    return lambda: _on_shutdown.remove(callback)


class Server(uvicorn.Server):
    """uvicorn.Server, which runs what the app registered with `when_stopping` as it shuts down."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        shutting_down = asyncio.ensure_future(super().shutdown(sockets))
        await asyncio.sleep(0)  # uvicorn closes its listeners and marks the open connections to close first
        for callback in list(_on_shutdown):
            callback()
        await shutting_down


def serve(factory: str, **options) -> bool:
    """Run the app `factory` makes with uvicorn's `options` until a signal stops it, as `uvicorn.run` does
    for one process. Returns whether it started."""
    server = Server(uvicorn.Config(factory, factory=True, **options))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return server.started
