"""The local stack's folder, `.salad/`: where `salad up` keeps its PostgreSQL, logs, URLs and tokens, and
where every other command finds them, from the folder `salad up` ran in or any folder below it.

The folder is the nearest `.salad/` walking up from the current folder (as git finds `.git/`), or the one
SALAD_HOME names. `stack.json` holds the stack's URLs, tokens and process ids; the next `salad up` reuses the
tokens and ports, so an open web page and `salad watch` go on working across restarts.
"""

import fcntl
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FOLDER = ".salad"
HOME_ENV = "SALAD_HOME"  # the stack's folder itself (a `.salad/`), wherever the command runs
STACK_FILE = "stack.json"  # URLs, tokens and process ids: written at each start and restart of a service
TOKEN_FILE = "client.token"  # the client token alone, for scripts
LOCK_FILE = "up.lock"  # held by the `salad up` running the stack
ROLES = ("client", "worker", "master")


def searched_folders(start: Path | None = None) -> list[Path]:
    """Where the stack's folder may be, nearest first: SALAD_HOME alone when it is set."""
    if os.environ.get(HOME_ENV):
        return [Path(os.environ[HOME_ENV]).expanduser().absolute()]
    start = (start or Path.cwd()).absolute()
    return [folder / FOLDER for folder in (start, *start.parents)]


def find_home(start: Path | None = None) -> Path | None:
    """The nearest existing stack folder, or None."""
    return next((folder for folder in searched_folders(start) if folder.is_dir()), None)


def where_looked(start: Path | None = None) -> str:
    """Where find_home looked, for a message saying it found nothing."""
    folders = searched_folders(start)
    if os.environ.get(HOME_ENV):
        return f"{HOME_ENV}={os.environ[HOME_ENV]} is not a folder"
    return f"no {FOLDER}/ in {folders[0].parent} or any folder above it, and {HOME_ENV} is not set"


def shown(path: Path) -> str:
    """A path as a person reads it: relative to the current folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600 whatever the umask or an older file said), replacing it
    whole: a reader never sees half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)
    os.replace(temporary, path)


def new_tokens() -> dict[str, str]:
    return {role: secrets.token_urlsafe(32) for role in ROLES}


@dataclass
class StackState:
    """What `salad up` writes in stack.json and the other commands read."""

    home: Path
    tokens: dict[str, str] = field(default_factory=new_tokens)
    shared_url: str | None = None
    master_url: str | None = None
    slots: int | None = None
    time_scale: float | None = None
    pid: int | None = None  # the `salad up` supervising the stack
    services: dict[str, dict] = field(default_factory=dict)  # name -> {"url", "pid"}

    @classmethod
    def load(cls, home: Path) -> "StackState | None":
        """The folder's stack.json, or None when there is none; ValueError when it cannot be read."""
        path = home / STACK_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "home"}
            state = cls(home, **known)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        if set(state.tokens) != set(ROLES) or not all(state.tokens.values()):
            raise ValueError(f"{path} does not hold the {', '.join(ROLES)} tokens")
        return state

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "home"}
        write_private(self.home / STACK_FILE, json.dumps(data, indent=2) + "\n")
        write_private(self.home / TOKEN_FILE, self.tokens["client"])

    def port(self, name: str) -> int | None:
        """The port a service had: `salad up` keeps it, so open pages and watchers find the stack again."""
        url = {"shared": self.shared_url, "master": self.master_url}[name]
        return int(url.rsplit(":", 1)[1]) if url else None

    def running(self) -> bool:
        """Whether a `salad up` holds the stack now (its lock taken shared, for an instant, to see)."""
        try:
            descriptor = os.open(self.home / LOCK_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)
        return False


def lock(home: Path, attempts: int = 5) -> int | None:
    """Take the folder's lock for as long as this process runs; None when another `salad up` holds it. A few
    attempts: a command checking `running` holds it for an instant."""
    descriptor = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(attempts):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return descriptor
        except BlockingIOError:
            time.sleep(0.1)
    os.close(descriptor)
    return None
