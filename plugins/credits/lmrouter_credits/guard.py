"""One process per embedded database: holds live in each worker's memory, so two processes
metering the same SQLite file would each let a user spend the whole balance. (On a server
database the holds live in the database, shared by every process: see holds.py.)

Two checks: the config (``[server] workers`` above 1 while the holds are per process: declared
through ``lmrouter_process_state``, refused by the core before any worker starts), and, while
serving, an exclusive lock on a file beside the database, which also stops a second ``lmrouter
serve`` started on the same file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from lmrouter import Store

try:
    import fcntl
except ImportError:  # Windows: the config check still applies
    fcntl = None  # type: ignore[assignment]

MESSAGE = (
    "the credits plugin keeps each request's credit hold in the worker's memory on the embedded "
    "SQLite store, so only one router process may serve it: {why}. What is missing for several "
    "is a store every process shares, where the holds then live: set [storage] url = "
    '"postgresql://…" (the postgres plugin), or run one worker.'
)


class ProcessLock:
    """An exclusive lock on ``<database>.credits.lock`` for as long as the server runs. The
    operating system drops it when the process dies, however it dies."""

    def __init__(self, store: Store) -> None:
        self.handle: IO[bytes] | None = None
        path = getattr(store, "path", None)
        if fcntl is None or store.multiprocess or path is None:
            return
        if Path(path) == Path(":memory:"):
            return
        handle = Path(f"{path}.credits.lock").open("ab")  # noqa: SIM115 (held while serving)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            why = f"another router process is serving {path} already"
            raise RuntimeError(MESSAGE.format(why=why)) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
