"""One training run per `--save-dir`: a lock file that names its owner.

Two runs writing into one folder would overwrite each other's best weights, history and resume
state, and the second one's `--resume` would delete the first one's temporary files. So
training holds `<save-dir>/fcn-train.lock` while it runs: the file records the owner (process
id, host, start time, command line) and is held with an exclusive `flock`, which the kernel
releases when the process dies however it dies (SIGKILL, OOM killer, a crash). A second run
finds the lock held and is refused with a message naming the owner; a lock file left by a dead
process is not held, so the next run takes it over with a warning. Where `flock` is not
available, the recorded process id is checked instead (same host only).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from fcn_keras.errors import OutputError

LOCK_NAME = "fcn-train.lock"

try:
    import fcntl
except ImportError:   # not POSIX: the process-id check alone
    fcntl = None


class SaveDirLock:
    """Context manager: hold `folder`'s training lock, or raise `OutputError` naming the run
    that holds it. `enabled=False` (a non-chief worker, which writes nothing there) is a no-op.
    """

    def __init__(self, folder: str | Path, enabled: bool = True, warn=None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.enabled = enabled
        self.warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
        self._fd = None

    def __enter__(self) -> "SaveDirLock":
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot create the --save-dir "
                              f"({exc.strerror or exc})") from None
        for _ in range(5):   # the owner may remove the file between our open and our lock
            fd = self._open()
            previous = _read_owner(fd)
            if not self._lock(fd, previous):
                os.close(fd)
                raise OutputError(self._busy_message(previous))
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise OutputError(f"{self.path}: could not take the training lock (the file keeps "
                              "changing: several runs are starting in this --save-dir)")
        self._fd = fd
        if previous and previous.get("pid") != os.getpid():
            self.warn(f"warning: {self.path}: taking over the stale lock of process "
                      f"{_owner_text(previous)}, which is no longer running")
        _write_owner(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)   # closing releases the flock
            self._fd = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create the training lock "
                              f"({exc.strerror or exc})") from None

    def _lock(self, fd: int, previous: dict | None) -> bool:
        """Whether this process now holds the lock."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError:   # no flock on this file system: fall back to the process id
                pass
        return not (previous and _alive_here(previous))

    def _busy_message(self, owner: dict | None) -> str:
        who = f"process {_owner_text(owner)}" if owner else "another process"
        return (f"{self.folder}: another training run is using this --save-dir ({who}; lock "
                f"file {self.path}); wait for it to end, stop it, or choose another --save-dir")


def _read_owner(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", "replace")
        if not text.strip():
            return None   # new, or its owner died before writing it
        owner = json.loads(text)
    except (OSError, ValueError):
        return {"pid": "?"}   # an unreadable lock file still marks a run
    return owner if isinstance(owner, dict) else {"pid": "?"}


def _write_owner(fd: int) -> None:
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": time.strftime("%Y-%m-%d %H:%M:%S"),
             "command": " ".join(sys.argv)}
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(owner) + "\n").encode("utf-8"))
    except OSError:
        pass   # the flock holds the folder; the record is only for the message


def _owner_text(owner: dict) -> str:
    text = str(owner.get("pid", "?"))
    if owner.get("host"):
        text += f" on {owner['host']}"
    if owner.get("started"):
        text += f", started {owner['started']}"
    if owner.get("command"):
        text += f": {str(owner['command'])[:200]}"
    return text


def _alive_here(owner: dict) -> bool:
    """Whether the recorded process still runs (a process on another host counts as alive)."""
    if owner.get("host") not in (None, socket.gethostname()):
        return True
    try:
        pid = int(owner.get("pid"))
        os.kill(pid, 0)
    except (TypeError, ValueError):
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False
