"""Poison messages: recognise the message that kills its worker process, wherever it comes back.

A handler that takes its process down (SIGSYS from the seccomp filter, a segfault in a C
extension, the OOM killer, os._exit, a watchdog kill) gets the same QoS 1 message redelivered
to the restarted worker, which dies again, until systemd stops restarting it. The rule (as
Sidekiq Pro's super_fetch): a message that was being handled when a process of this host died
`threshold` times (default 2) is poison; the worker spools it as a dead letter and acknowledges
it without running it again. Messages are recognised by topic and payload (`message_key`),
never by packet id, so any worker process of the host knows them (and a retained message,
sent again at each subscribe). The directory is <state_dir>/in-progress (SUBDIR), shared by
every worker of the host:

    <directory>/<owner>-<pid>.slots   one journal per live worker process: `capacity` slots of
                                      16 bytes (a message_key, or zeros when free), mapped
                                      MAP_SHARED and flock()ed by its owner for its whole life
    <directory>/suspects.json         the host's tally: {hexdigest: {"deaths": n, "first":
                                      epoch, "last": epoch}}, replaced atomically (temp file,
                                      rename) under an flock on <directory>/.lock
    <directory>/.lock                 that lock; .<owner>-<pid>.slots.tmp: a journal being made

`begin` writes the key into a free slot of the mapping and `end` zeroes it: no system call per
message, and the kernel keeps a shared mapping's pages when the process dies in any way. A
journal whose flock can be taken belongs to a dead process: `harvest` adds one death per key
found in it to the tally, then unlinks it. A clean exit (`close`) unlinks its journal first, so
it is never a death. Nothing is fsynced: a power loss kills every process alike, and this is a
heuristic about process deaths, not a record that must survive the machine.

Every message in flight when a process dies gets a death, the innocent ones beside the culprit
too; `forget` clears one that later completes normally. So the caller should run a suspect
(`deaths` >= 1) alone, with nothing else in flight: a second death then convicts the culprit
only. Entries not seen for 7 days are dropped.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import stat
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["Quarantine", "message_key", "open_quarantine", "SUBDIR"]

log = logging.getLogger("routemq.poison")

SUBDIR = "in-progress"  # under the state directory, beside dead-letters/
KEY_SIZE = 16
JOURNAL_SUFFIX = ".slots"
TALLY = "suspects.json"
LOCK = ".lock"
MAX_AGE = 7 * 24 * 3600.0  # seconds a tally entry lives after its last death
_ZERO = bytes(KEY_SIZE)
_blake2b = hashlib.blake2b

Records = dict[str, dict[str, Any]]  # the tally as stored: hexdigest -> deaths, first, last


# --- pure helpers -------------------------------------------------------------------------------

def message_key(topic: str, payload: bytes) -> bytes:
    """The 16-byte key of a message: blake2b over the topic, a NUL (which no MQTT topic
    holds, so ("a", b"b/c") and ("a/b", b"c") differ) and the payload.

    >>> message_key("a", b"b/c") != message_key("a/b", b"c"), len(message_key("t", b""))
    (True, 16)
    >>> message_key("sensors/1", b"x").hex()
    '24fc33645137902f84a5170611b86f70'
    """
    return _blake2b(topic.encode() + b"\0" + payload, digest_size=KEY_SIZE).digest()


def slot_keys(data: bytes) -> set[bytes]:
    """The distinct keys in a journal's bytes (free slots are zeros; a torn tail is ignored).

    >>> sorted(slot_keys(bytes(16) + b"k" * 16 + b"k" * 16 + b"torn"))
    [b'kkkkkkkkkkkkkkkk']
    """
    keys = {data[i:i + KEY_SIZE] for i in range(0, len(data) - KEY_SIZE + 1, KEY_SIZE)}
    keys.discard(_ZERO)
    return keys


def decode_tally(data: bytes) -> Records:
    """The tally's records; ValueError when the file is not one.

    >>> decode_tally(b'{"' + b"ab" * 16 + b'": {"deaths": 2, "first": 1.0, "last": 5}}')
    {'abababababababababababababababab': {'deaths': 2, 'first': 1.0, 'last': 5}}
    >>> decode_tally(b'{"x": 1}')
    Traceback (most recent call last):
    ValueError: bad entry 'x'
    """
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    for key, entry in doc.items():
        if (len(key) != 2 * KEY_SIZE or not _is_hex(key) or not isinstance(entry, dict)
                or not _is_count(entry.get("deaths"))
                or not all(_is_number(entry.get(k)) for k in ("first", "last"))):
            raise ValueError(f"bad entry {key!r}")
    return doc


def add_deaths(records: Records, keys: Iterable[bytes], now: float) -> Records:
    """`records` with one more death for each key (a new record for a new key).

    >>> add_deaths({}, [b"\\1" * 16], 10.0)
    {'01010101010101010101010101010101': {'deaths': 1, 'first': 10.0, 'last': 10.0}}
    """
    out = dict(records)
    for key in keys:
        hexkey = key.hex()
        old = out.get(hexkey)
        out[hexkey] = ({"deaths": 1, "first": now, "last": now} if old is None else
                       {"deaths": old["deaths"] + 1, "first": old["first"], "last": now})
    return out


def prune(records: Records, now: float, max_age: float = MAX_AGE) -> Records:
    """The records whose last death is at most `max_age` seconds old.

    >>> sorted(prune({"a": {"last": 0.0}, "b": {"last": 95.0}}, 100.0, max_age=10))
    ['b']
    """
    return {k: v for k, v in records.items() if v["last"] >= now - max_age}


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- the quarantine -----------------------------------------------------------------------------

class Quarantine:
    """One worker process's journal plus the host's tally (see the module docstring).

    `begin`/`end` may be called from several threads (list pop/append are atomic, and each
    slot belongs to one caller); the other methods from one thread at a time."""

    def __init__(self, directory: str | os.PathLike[str], *, owner: str, threshold: int = 2,
                 capacity: int = 256) -> None:
        if not owner or owner.startswith(".") or "/" in owner or "\0" in owner:
            raise ValueError(f"owner {owner!r} cannot be part of a file name")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0 (0: quarantine off), not {threshold}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        self.directory = Path(directory)
        self.owner, self.threshold, self.capacity = owner, threshold, capacity
        self._tally: dict[bytes, int] = {}  # key -> deaths, as of the last harvest or write
        self._free: list[int] = []  # free slots; empty while not open, so begin returns -1
        self._map: mmap.mmap | None = None
        self._fd = -1
        self._name = ""  # our journal's file name while open
        self._last_harvest = float("-inf")
        self._tally_seen: tuple[int, int, int] | None = None  # (ino, mtime_ns, size) loaded
        self._warned: set[Any] = set()

    def __repr__(self) -> str:
        return (f"Quarantine({str(self.directory)!r}, owner={self.owner!r}, "
                f"threshold={self.threshold}, capacity={self.capacity})")

    def __enter__(self) -> "Quarantine":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- life --------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and this process's journal, then harvest once. OSError naming
        the directory when it cannot be used (the caller then runs without quarantine)."""
        if self._fd >= 0:
            return
        try:
            self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            self._create_journal()
        except OSError as exc:
            raise OSError(exc.errno, f"cannot keep the records of messages in progress in "
                          f"{self.directory}: {exc.strerror or exc}") from exc
        _open_quarantines.add(self)
        self.harvest()

    def _create_journal(self) -> None:
        # Made under a dot name, locked and sized, then linked into place: a harvester never
        # sees it unlocked or empty. link(), unlike rename(), never replaces the journal of
        # a dead process that had our pid (a restarted container): that one is harvested.
        name = f"{self.owner}-{os.getpid()}{JOURNAL_SUFFIX}"
        temp = self.directory / f".{name}.tmp"
        size = self.capacity * KEY_SIZE
        _unlink(temp)  # left by a process of our pid killed inside open()
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                while True:
                    try:
                        os.link(temp, self.directory / name)
                        break
                    except FileExistsError:
                        if not self._harvest_names([name]):
                            raise OSError(errno.EEXIST, f"{self.directory / name} belongs to "
                                          "a live process") from None
            except BaseException:
                mapping.close()
                raise
        except BaseException:
            os.close(fd)
            raise
        finally:
            _unlink(temp)
        self._fd, self._map, self._name = fd, mapping, name
        self._free = list(range(self.capacity - 1, -1, -1))  # pop() hands out slot 0 first

    def close(self) -> None:
        """Unmap and unlink the journal, then unlock: a clean exit is not a death."""
        if self._fd < 0:
            return
        self._free = []
        _open_quarantines.discard(self)
        assert self._map is not None
        self._map.close()
        try:
            os.unlink(self.directory / self._name)  # before the unlock: no harvester counts it
        except OSError:
            pass  # gone already, or not ours to remove: nothing better to do
        os.close(self._fd)
        self._fd, self._map, self._name = -1, None, ""

    def _forget_after_fork(self) -> None:
        # A forked child inherits the lock's open file description: as long as it held it,
        # the parent's journal would look alive after the parent died. Closing the child's
        # copy leaves the parent's lock (flock locks go with the last descriptor).
        if self._fd >= 0:
            self._free = []
            assert self._map is not None
            self._map.close()
            os.close(self._fd)
            self._fd, self._map, self._name = -1, None, ""

    # -- per message -------------------------------------------------------------------------

    def begin(self, topic: str, payload: bytes) -> int:
        """Record that this message is being handled; the slot for `end`, or -1 when all
        slots are taken (or the journal is not open): the message is then not recorded."""
        try:
            slot = self._free.pop()
        except IndexError:
            return -1
        offset = slot * KEY_SIZE
        self._map[offset:offset + KEY_SIZE] = _blake2b(  # type: ignore[index]
            topic.encode() + b"\0" + payload, digest_size=KEY_SIZE).digest()
        return slot

    def end(self, slot: int) -> None:
        """The message of `slot` is no longer being handled (-1 is ignored). Call once."""
        if slot < 0 or self._fd < 0:
            return
        offset = slot * KEY_SIZE
        self._map[offset:offset + KEY_SIZE] = _ZERO  # type: ignore[index]
        self._free.append(slot)

    def deaths(self, topic: str, payload: bytes) -> int:
        """Process deaths recorded while this message was being handled (as of the last
        harvest). With no suspect at all, one truth test and no hashing."""
        if not self._tally:
            return 0
        return self._tally.get(message_key(topic, payload), 0)

    def poisonous(self, topic: str, payload: bytes) -> int | None:
        """The message's death count when it reached the threshold, else None (always None
        with threshold 0)."""
        if not self._tally or not self.threshold:
            return None
        count = self._tally.get(message_key(topic, payload), 0)
        return count if count >= self.threshold else None

    def forget(self, topic: str, payload: bytes) -> None:
        """Drop the message from the tally (spooled as a dead letter, or it completed: it did
        not kill us this time). No I/O when it is not a suspect."""
        if not self._tally:
            return
        key = message_key(topic, payload)
        if key not in self._tally:
            return
        hexkey = key.hex()
        self._update(lambda records: {k: v for k, v in records.items() if k != hexkey})

    # -- harvest -----------------------------------------------------------------------------

    def harvest(self, min_interval: float = 0.0) -> int:
        """Count the deaths in the journals of dead processes (at most once per
        `min_interval` seconds) and reload the tally when it changed; the number of
        journals harvested. Never raises: trouble is a logged warning."""
        now = time.monotonic()
        if now - self._last_harvest < min_interval:
            return 0
        self._last_harvest = now
        try:
            names = [n for n in os.listdir(self.directory)
                     if n.endswith(JOURNAL_SUFFIX) and not n.startswith(".") and n != self._name]
        except OSError as exc:
            self._warn_once(("listdir", exc.errno),
                            "cannot list %s, poison detection is blind: %s", self.directory, exc)
            return 0
        harvested = self._harvest_names(names) if names else 0
        self._reload_if_changed()  # another process may have counted deaths or forgotten
        return harvested

    def _harvest_names(self, names: list[str]) -> int:
        """Harvest those of `names` that are dead journals; how many were."""
        dead: list[tuple[int, Path]] = []  # locked fds of dead journals, and their paths
        try:
            keys: list[bytes] = []
            for name in names:
                path = self.directory / name
                try:
                    fd = _lock_if_dead(path)
                except OSError as exc:  # another user's, a symlink: skip it, not the others
                    self._warn_once(("denied", name), "cannot harvest %s: %s", path, exc)
                    continue
                if fd is not None:
                    dead.append((fd, path))
                    keys.extend(slot_keys(_read_all(fd)))
            if not dead:
                return 0
            if keys:
                now = time.time()
                self._update(lambda records: add_deaths(records, keys, now), fail=True)
            for _, path in dead:
                _unlink(path)  # after the tally holds its deaths, so none is lost
        except OSError as exc:
            self._warn_once(("harvest", exc.errno), "cannot record the deaths of worker "
                            "processes in %s (will retry): %s", self.directory, exc)
            return 0
        finally:
            for fd, _ in dead:
                os.close(fd)  # unlock, after the unlink
        if keys:
            log.warning("%d worker process(es) of this host died while handling %d "
                        "message(s): %s", len(dead), len(keys),
                        ", ".join(p.name for _, p in dead))
        return len(dead)

    # -- the tally ---------------------------------------------------------------------------

    def _update(self, change: Callable[[Records], Records], fail: bool = False) -> None:
        """Read-modify-write the tally under its lock; the in-memory copy follows. An OSError
        is raised with `fail`, else logged."""
        tally = self.directory / TALLY
        try:
            lock = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o640)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                records = prune(change(self._read()), time.time())
                temp = self.directory / f".{TALLY}.{os.getpid()}.tmp"
                try:
                    with open(temp, "w") as f:
                        json.dump(records, f, separators=(",", ":"))
                    os.chmod(temp, 0o640)
                    os.rename(temp, tally)
                except BaseException:
                    _unlink(temp)
                    raise
                self._tally = _counts(records)
                self._tally_seen = _signature(tally)
            finally:
                os.close(lock)
        except OSError as exc:
            if fail:
                raise
            self._warn_once(("write", exc.errno), "cannot update %s: %s", tally, exc)

    def _read(self) -> Records:
        """The tally's records; empty (with one warning per damaged file) when unreadable."""
        path = self.directory / TALLY
        try:
            with open(path, "rb") as f:
                data = f.read()
                signature = _signature_of(os.fstat(f.fileno()))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn_once(("read", exc.errno), "cannot read %s, taken as empty: %s", path, exc)
            return {}
        try:
            return decode_tally(data)
        except ValueError as exc:  # json's errors and UnicodeDecodeError are ValueErrors
            self._warn_once(signature, "%s is damaged, taken as empty: %s", path, exc)
            return {}

    def _reload_if_changed(self) -> None:
        signature = _signature(self.directory / TALLY)
        if signature != self._tally_seen:
            self._tally = _counts(prune(self._read(), time.time()))
            self._tally_seen = signature

    def _warn_once(self, key: Any, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)


def open_quarantine(config: Any, owner: str, router: Any) -> Quarantine | None:
    """The open Quarantine of a worker (or drainer) of `config` running `router`'s routes,
    in <state_dir>/in-progress; None when `poison_threshold` is 0 or the directory cannot be
    used (logged: the worker runs on, without poison detection).

    Its journal has a slot for every handler that can run at once: max_inflight (shared
    routes) plus one per route that is not shared, and some for handlers that outlive
    their cancellation."""
    from routemq.environment import config_state_directory

    threshold = getattr(config, "poison_threshold", 2)
    if not threshold:
        return None
    quarantine = Quarantine(config_state_directory(config) / SUBDIR, owner=owner,
                            threshold=threshold,
                            capacity=config.max_inflight + len(router.routes) + 16)
    try:
        quarantine.open()
    except OSError as exc:
        log.warning("%s; running without poison-message detection", exc)
        return None
    return quarantine


def _counts(records: Records) -> dict[bytes, int]:
    return {bytes.fromhex(k): v["deaths"] for k, v in records.items()}


def _signature_of(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        return _signature_of(os.stat(path))
    except OSError:
        return None


def _lock_if_dead(path: Path) -> int | None:
    """A locked descriptor of the journal at `path` when its owner is dead, else None. The
    lock taken, the path must still name the file locked: else another harvester counted
    and unlinked it meanwhile (and a new journal may have taken its name)."""
    try:  # O_NONBLOCK: a FIFO by that name must not hang the harvest
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        mine, there = os.fstat(fd), os.stat(path)
        if (stat.S_ISREG(mine.st_mode)
                and (mine.st_ino, mine.st_dev) == (there.st_ino, there.st_dev)):
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass  # alive, or harvested meanwhile
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_open_quarantines: "weakref.WeakSet[Quarantine]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for quarantine in list(_open_quarantines):
        quarantine._forget_after_fork()
    _open_quarantines.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
