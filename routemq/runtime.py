"""Files under the runtime directory (/run/routemq): the plan, the master's and the workers'
state, and the locks that keep one master per directory and one process per instance.

    <runtime_dir>/plan.json          written by the master, read by every worker
    <runtime_dir>/master.json        written by the master every tick (`routemq status`)
    <runtime_dir>/master.lock        flock'ed by the running master
    <runtime_dir>/workers/<N>.json   written by worker N about once a second
    <runtime_dir>/workers/<N>.lock   flock'ed by the process running instance N

Writes are atomic (a temporary file in the same directory, then rename) with explicit modes
(files 0644, directories 0755) whatever the umask, so a reader never sees half a document.

Reads trust nothing: every file is opened without following a symbolic link and without
blocking (a FIFO named workers/9.json must not hang anyone), must be a regular file of bounded
size, and becomes a typed document (routemq.documents: WorkerHealth, MasterState) whose fields
are checked against what the writer writes. Whatever does not pass becomes a one-line note
("workers/3.json: ignored invalid rate (want a number >= 0)"), never an exception.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import stat
import tempfile
import time
from typing import Any, Callable

from routemq.documents import MasterState, WorkerHealth
from routemq.plan import Plan

log = logging.getLogger("routemq.runtime")

DIR_MODE, FILE_MODE = 0o755, 0o644
MAX_DOC_BYTES = 1 << 20    # a health file or master.json is a few kB
MAX_PLAN_BYTES = 16 << 20  # thousands of routes on hundreds of instances fit easily


class RuntimePaths:
    def __init__(self, runtime_dir: str) -> None:
        self.root = runtime_dir
        self.plan = os.path.join(runtime_dir, "plan.json")
        self.master = os.path.join(runtime_dir, "master.json")
        self.master_lock = os.path.join(runtime_dir, "master.lock")
        self.workers = os.path.join(runtime_dir, "workers")

    def health(self, instance: int) -> str:
        return os.path.join(self.workers, f"{instance}.json")

    def instance_lock(self, instance: int) -> str:
        return os.path.join(self.workers, f"{instance}.lock")


# --- writing ----------------------------------------------------------------------------------

def ensure_dir(path: str) -> None:
    """Create `path` and its missing parents as 0755 whatever the umask (os.makedirs' mode is
    masked by it: with umask 000 the runtime directory would be world-writable). An existing
    directory is left as it is."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    if parent != path:
        ensure_dir(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return  # made by another process meanwhile: its mode is its creator's business
    os.chmod(path, DIR_MODE)


def write_text_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    ensure_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, FILE_MODE)  # readable by `routemq status` run by any operator
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: str, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, separators=(",", ":"), sort_keys=True))


# --- reading ----------------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
StatCheck = Callable[[os.stat_result], "str | None"]


def read_bytes(path: str, limit: int = MAX_DOC_BYTES, check: StatCheck | None = None
               ) -> tuple[bytes | None, str | None]:
    """(content, None); (None, None) when there is no file; (None, why it is not read).

    `check` judges the opened file's fstat (the file read is the file judged)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "a symbolic link, not read"
        return None, f"cannot read: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            return None, f"not a regular file ({kind}), not read"
        problem = check(st) if check is not None else None
        if problem:
            return None, problem
        if st.st_size > limit:
            return None, f"{st.st_size} bytes, over the {limit}-byte limit, not read"
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # grew after fstat
            return None, f"over the {limit}-byte limit, not read"
        return b"".join(chunks), None
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)


def load_json(path: str, name: str, limit: int = MAX_DOC_BYTES) -> tuple[Any, str | None]:
    """(document, None), (None, None) when the file does not exist, or (None, a note) that
    starts with `name`."""
    data, problem = read_bytes(path, limit)
    if data is None:
        return None, f"{name}: {problem}" if problem else None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"{name}: not UTF-8 text"
    if not text.strip():
        return None, f"{name}: empty file"
    try:
        return json.loads(text), None
    except RecursionError:
        return None, f"{name}: not valid JSON (nested too deeply)"
    except ValueError as exc:  # also an integer of more than 4,300 digits
        return None, f"{name}: not valid JSON ({exc})"


# --- the documents (routemq.documents says what they may hold) --------------------------------

def read_health(path: str, instance: int, now: float | None = None
                ) -> tuple[WorkerHealth | None, list[str]]:
    """Worker `instance`'s health file: (None, []) when there is none, an unusable
    WorkerHealth and a note when it cannot be used, else the checked document and notes on
    what was ignored."""
    name = f"workers/{os.path.basename(path)}"
    doc, note = load_json(path, name)
    if note:
        return WorkerHealth.unusable(instance), [note]
    if doc is None:
        return None, []
    return WorkerHealth.from_doc(doc, instance, time.time() if now is None else now, name)


def read_health_dir(directory: str, now: float | None = None
                    ) -> tuple[dict[int, WorkerHealth], list[str]]:
    """Each workers/<N>.json as instance -> WorkerHealth (unusable ones included). Other
    names (temporaries, locks, session markers) are skipped."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [f"workers/: cannot list: {exc.strerror or exc}"]
    now = time.time() if now is None else now
    workers: dict[int, WorkerHealth] = {}
    notes: list[str] = []
    for name in sorted(names, key=lambda n: (len(n), n)):
        stem, dot, ext = name.partition(".")
        if not (ext == "json" and stem.isascii() and stem.isdigit() and int(stem) > 0):
            continue
        # A worker that stops cleanly deletes its file: between listdir and open it may be
        # gone, which is "no file", not a problem.
        doc, found = read_health(os.path.join(directory, name), int(stem), now)
        notes.extend(found)
        if doc is not None:
            workers[int(stem)] = doc
    return workers, notes


def read_master(path: str, now: float | None = None) -> tuple[MasterState | None, list[str]]:
    """master.json checked (MasterState.from_doc); (None, notes) when missing or unusable."""
    doc, note = load_json(path, "master.json")
    if doc is None:
        return None, [note] if note else []
    return MasterState.from_doc(doc, time.time() if now is None else now)


# --- the plan ---------------------------------------------------------------------------------

def _untrusted(st: os.stat_result, directory: os.stat_result) -> str | None:
    """Why a worker must not follow a plan file with this owner and mode in a directory with
    that owner and mode, or None."""
    ours = (os.geteuid(), 0)
    if st.st_uid not in ours:
        return f"owned by uid {st.st_uid}, neither this user ({os.geteuid()}) nor root"
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    if directory.st_mode & 0o022 and not (directory.st_mode & stat.S_ISVTX
                                          and directory.st_uid in ours):
        return (f"in a directory writable by others (mode "
                f"{stat.S_IMODE(directory.st_mode):04o}): anyone could replace it")
    return None


def plan_problem(path: str) -> str | None:
    """Why the plan at `path` is not to be trusted (owner, mode, its directory), or None (also
    when there is no plan)."""
    try:
        st = os.lstat(path)
        directory = os.stat(os.path.dirname(os.path.abspath(path)))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    return _untrusted(st, directory)


def load_plan(path: str, trusted_only: bool = False) -> tuple[Plan | None, str | None]:
    """(plan, None); (None, None) when there is no plan; (None, "plan.json: why") when there is
    one that cannot be used (or, with `trusted_only`, is not trusted: see plan_problem)."""
    check = None
    if trusted_only:
        try:
            directory = os.stat(os.path.dirname(os.path.abspath(path)))
        except OSError as exc:
            return None, f"plan.json: cannot check its directory: {exc.strerror or exc}"
        check = lambda st: _untrusted(st, directory)  # noqa: E731
    data, problem = read_bytes(path, MAX_PLAN_BYTES, check)
    if data is None:
        return None, f"plan.json: {problem}" if problem else None
    try:
        return Plan.from_json(data), None
    except RecursionError:
        return None, "plan.json: ignored: nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"plan.json: ignored: {exc}"


def read_plan(path: str, trusted_only: bool = False) -> Plan | None:
    """The plan, or None when there is none or it cannot be used (logged as one warning that
    says why)."""
    plan, note = load_plan(path, trusted_only)
    if note:
        log.warning("refusing %s: %s", path, note.removeprefix("plan.json: "))
    return plan


# --- the master -------------------------------------------------------------------------------

def running_master(paths: RuntimePaths, now: float) -> int | None:
    """The pid of the master that owns this runtime directory now (its process exists and
    master.json is fresh), else None."""
    master, _ = read_master(paths.master, now)
    if master is None or master.pid is None or not master.fresh(now):
        return None
    return master.pid if pid_alive(master.pid) else None


def master_lock_holder(paths: RuntimePaths) -> int | None:
    """The pid of the process that holds <runtime_dir>/master.lock (0: held, pid not written
    yet), or None when no master holds it."""
    return lock_holder(paths.master_lock)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# --- locks ------------------------------------------------------------------------------------

class FileLock:
    """An exclusive flock(2) on `path`, held as long as this object keeps the file open: the
    kernel releases it when the process ends, kill -9 included, so a lock is never stale.
    The holder's pid is written into the file, for messages only (see lock_holder).

        lock = FileLock(paths.master_lock)
        if not lock.try_acquire():
            sys.exit(f"another master (pid {lock_holder(lock.path)}) is running")
    """

    RETRIES = 3  # lock_holder() takes a shared lock for a moment; do not mistake it for a holder

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """True when this process now holds the lock, False when another holds it; never
        waits for the holder. OSError when the file cannot be opened (not a regular file,
        a symbolic link, no permission)."""
        if self._fd is not None:
            return True
        ensure_dir(os.path.dirname(self.path) or ".")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK, FILE_MODE)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", self.path)
            for attempt in range(self.RETRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == self.RETRIES - 1:
                        os.close(fd)
                        return False
                    time.sleep(0.01)
            if st.st_uid == os.geteuid():
                os.fchmod(fd, FILE_MODE)  # whatever the umask made of O_CREAT's mode
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(path: str) -> int | None:
    """The pid written by the process holding the lock at `path`; 0 when it is held but the
    holder has not written its pid yet; None when nobody holds it (or it cannot be checked)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # we could lock it: nobody holds it (closing fd releases ours)
        except BlockingIOError:
            pass
        for _ in range(20):  # the holder writes its pid just after taking the lock
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            if text.isdigit() and int(text) > 0:
                return int(text)
            time.sleep(0.01)
        return 0
    finally:
        os.close(fd)


# --- broker sessions --------------------------------------------------------------------------
# workers/<N>.session exists from before instance N's first connection until its broker
# session was ended (by the worker planned out, or by the master's drainer): the master drains
# the marked instances that left the plan (routemq.orphans).

_MARKER = re.compile(r"^(\d+)\.session$")


def marker_path(workers_dir: str, instance: int) -> str:
    return os.path.join(workers_dir, f"{instance}.session")


def mark_session(workers_dir: str, instance: int) -> None:
    """Instance `instance` may have a broker session from now on (call before connecting)."""
    ensure_dir(workers_dir)
    fd = os.open(marker_path(workers_dir, instance),
                 os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    os.close(fd)


def unmark_session(workers_dir: str, instance: int) -> None:
    """Its session was ended: nothing to drain."""
    try:
        os.unlink(marker_path(workers_dir, instance))
    except FileNotFoundError:
        pass


def marked_sessions(workers_dir: str) -> set[int]:
    """The instances that may have a broker session (see the module docstring)."""
    try:
        names = os.listdir(workers_dir)
    except OSError:
        return set()
    return {int(m.group(1)) for m in map(_MARKER.match, names) if m}
