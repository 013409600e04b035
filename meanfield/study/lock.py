"""An owner lock on a directory (a run directory or a sweep directory).

``DIR/.lock`` holds ``{"pid", "host", "since"}``. It is taken race-free: the owner's record is
written to a temporary file first and then ``os.link``-ed to the lock name, which fails atomically
when a lock exists, so a lock is never seen empty or half-written. The owner also holds an
``flock`` on that inode for its whole life, taken before the inode gets the lock name; the kernel
drops it when the owner dies. A lock is taken over only when its flock can be taken *and* its pid
is dead (same host): the flock makes two processes that find the same stale lock take turns, so
only one of them replaces it. A live owner, or one on another host, is refused with a message
naming the holder and the two ways on.
"""

from __future__ import annotations

import fcntl
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
        self._fd = None

    def __enter__(self) -> "DirLock":
        self.dir.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "what": self.what}
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".lock-")
        try:
            with os.fdopen(os.dup(fd), "w") as fh:
                json.dump(me, fh)
            # the owner holds an flock on the lock's inode for its whole life, taken *before* the
            # inode gets the lock name: a lock whose flock can be taken has a dead owner
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for _ in range(20):
                try:
                    os.link(tmp, self.path)
                    self._fd, fd = fd, None
                    self.held = True
                    return self
                except FileExistsError:
                    self._take_over_if_stale()
            raise LockedError(f"could not take the lock {self.path}; delete it if nothing runs there")
        finally:
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _take_over_if_stale(self) -> None:
        """Remove the lock file when its owner is gone; raise LockedError when it is alive."""
        try:
            other_fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return  # released meanwhile: try to link again
        try:
            other = self._read() or {}
            if other.get("host", socket.gethostname()) != socket.gethostname():
                raise self._busy(other)      # another machine's lock: cannot tell, refuse
            try:
                fcntl.flock(other_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise self._busy(other) from None
            if "pid" in other and not self._dead(other):
                raise self._busy(other)      # a live pid without the flock: refuse, to be safe
            # we hold that inode's flock: its owner is dead; remove it only if it is still the
            # file at the lock name (another taker may have replaced it already)
            try:
                same = os.path.samefile(self.path, f"/proc/self/fd/{other_fd}") \
                    if os.path.exists("/proc/self/fd") else \
                    os.stat(self.path).st_ino == os.fstat(other_fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(other_fd)

    def _busy(self, other: dict) -> LockedError:
        return LockedError(
            f"another {other.get('what', self.what)} (pid {other.get('pid')} on "
            f"{other.get('host')}) is writing into {self.dir}; wait for it to finish or choose "
            f"another --out (if that process is gone, delete {self.path})")

    def _read(self):
        try:
            other = json.loads(self.path.read_text())
            return other if isinstance(other, dict) else None
        except (OSError, ValueError):
            return None

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
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            finally:
                os.close(self._fd)   # releases the flock
                self.held = False
