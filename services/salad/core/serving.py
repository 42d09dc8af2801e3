"""uvicorn's server, telling the app at once when a signal asks it to stop.

uvicorn tells an app it stops (lifespan shutdown) only once every open request is answered. Master's open
requests are mostly long-polls that wait for tasks up to SALAD_MAX_CLAIM_WAIT: told only then, it kept its
workers waiting for nothing, and its restart, for as long. An app registers with `when_stopping` what to do
the moment the signal comes (Master answers its long-polls, with no task).
"""

import asyncio
from collections.abc import Callable
from types import FrameType

import uvicorn

_on_signal: list[Callable[[], None]] = []


def when_stopping(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` on the running event loop when a signal asks the server to stop. Returns what
    unregisters it (the app's lifespan ends)."""
    loop = asyncio.get_running_loop()

    def notify() -> None:  # called from the signal handler: the loop runs the callback at its next turn
        loop.call_soon_threadsafe(callback)

    _on_signal.append(notify)
    return lambda: _on_signal.remove(notify)


class Server(uvicorn.Server):
    """uvicorn.Server, which also runs what the app registered with `when_stopping` on SIGINT or SIGTERM."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        for notify in list(_on_signal):
            notify()


def serve(factory: str, **options) -> bool:
    """Run the app `factory` makes with uvicorn's `options` until a signal stops it, as `uvicorn.run` does
    for one process. Returns whether it started."""
    server = Server(uvicorn.Config(factory, factory=True, **options))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return server.started
