"""An owner lock on a directory (a run directory or a sweep directory).

``DIR/.lock`` holds ``{"pid", "host", "since"}``. It is taken race-free: the owner's record is
written to a temporary file first and then ``os.link``-ed to the lock name, which fails atomically
when a lock exists, so a lock is never seen empty or half-written. A lock whose process is dead
(same host, no such pid) is taken over; a live one, or one from another host, is refused with a
message naming the holder and the two ways on.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["DirLock", "LockedError"]


class LockedError(RuntimeError):
    """Another live process owns the directory."""


class DirLock:
    """Context manager owning ``out/.lock``.

    Args:
        out: the directory (created if missing).
        what: what owns it, for messages (``run``, ``sweep``).
    """

    def __init__(self, out: str | Path, what: str = "run"):
        self.dir = Path(out)
        self.path = self.dir / ".lock"
        self.what = what
        self.held = False

    def __enter__(self) -> "DirLock":
        self.dir.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "what": self.what}
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".lock-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            for _ in range(5):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return self
                except FileExistsError:
                    other = self._read()
                    if other is not None and not self._dead(other):
                        raise LockedError(
                            f"another {other.get('what', self.what)} (pid {other.get('pid')} on "
                            f"{other.get('host')}) is writing into {self.dir}; wait for it to finish "
                            f"or choose another --out (if that process is gone, delete {self.path})"
                        ) from None
                    if other is None and time.time() - self._mtime() < 5.0:
                        time.sleep(0.2)  # a foreign, unreadable lock written just now: look again
                        continue
                    try:  # dead owner (or an unreadable lock older than 5 s): take it over
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
            raise LockedError(f"could not take the lock {self.path}; delete it if nothing runs there")
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _read(self):
        try:
            other = json.loads(self.path.read_text())
            return other if isinstance(other, dict) else None
        except (OSError, ValueError):
            return None

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    @staticmethod
    def _dead(other: dict) -> bool:
        if other.get("host") != socket.gethostname():
            return False  # cannot tell: refuse rather than corrupt
        try:
            pid = int(other["pid"])
            if pid == os.getpid():
                return False
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
            return False
        return False

    def __exit__(self, *exc):
        if self.held:
            other = self._read()
            if other is None or (other.get("pid") == os.getpid()
                                 and other.get("host") == socket.gethostname()):
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
            self.held = False
