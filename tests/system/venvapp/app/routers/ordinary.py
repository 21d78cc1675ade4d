"""The system tests' application with a dependency of its own (tinydep, installed only in
/srv/routemq/.venv) and handler code as real applications write it.

venv/{batch}      shared over 4 instances, QoS 1: logs "processed" (batch, seq, tinydep's
                  result, the interpreter's prefix, VERSION) for every message
single/{batch}    the same on one instance (not shared)
ordinary/{n}      QoS 1: does what ordinary handler code does (SQLite in the state directory,
                  a temporary file, a subprocess, a process pool and threads, a loopback TCP
                  connection, a ctypes callback, a lower RLIMIT_NOFILE, os.nice(1)) and that
                  the application root is read-only; logs "ordinary code checked" with "ok" or
                  the exception of each
"""
import asyncio
import concurrent.futures
import ctypes
import logging
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import tinydep

from routemq.router import Router

log = logging.getLogger("app.ordinary")
router = Router()
VERSION = "v1"  # the reload test writes a v2 of this file


def square(n: int) -> int:
    return n * n


def sqlite_in_state_directory() -> None:
    with sqlite3.connect(Path(os.environ["STATE_DIRECTORY"]) / "app.db") as db:
        db.execute("create table if not exists seen (n integer)")
        db.execute("insert into seen values (1)")
        assert db.execute("select count(*) from seen").fetchone()[0] >= 1


def temporary_file() -> None:
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"x" * 4096)
        f.flush()
        assert os.path.getsize(f.name) == 4096


def run_subprocess() -> None:
    out = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                         check=True, timeout=30)
    assert out.stdout.strip() == b"42", out


def process_pool_and_threads() -> None:
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        assert list(pool.map(square, range(5))) == [0, 1, 4, 9, 16]
    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        assert list(threads.map(square, range(5))) == [0, 1, 4, 9, 16]


def loopback_tcp() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"


def ctypes_callback() -> None:
    libc = ctypes.CDLL(None)
    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                               ctypes.POINTER(ctypes.c_int))(lambda a, b: a[0] - b[0])
    values = (ctypes.c_int * 4)(3, 1, 4, 2)
    libc.qsort(values, 4, ctypes.sizeof(ctypes.c_int), compare)
    assert list(values) == [1, 2, 3, 4]


def lower_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft // 2, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft // 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # back, up to the hard limit


def nice() -> None:
    before = os.nice(0)
    assert os.nice(1) == before + 1


def app_root_read_only() -> None:
    try:
        Path("/srv/routemq/written-by-a-handler").write_text("x")
    except OSError:
        return
    raise AssertionError("the application root is writable")


CHECKS = [sqlite_in_state_directory, temporary_file, run_subprocess, process_pool_and_threads,
          loopback_tcp, ctypes_callback, lower_nofile, nice, app_root_read_only]


def run_checks() -> dict:
    results = {}
    for check in CHECKS:
        try:
            check()
            results[check.__name__] = "ok"
        except BaseException as exc:  # noqa: B036 - report everything, the test reads it
            results[check.__name__] = f"{type(exc).__name__}: {exc}"
    return results


@router.on("venv/{batch}", shared=True, worker_count=4, qos=1)
@router.on("single/{batch}", qos=1)
async def venv(batch, payload, client):
    seq = payload["seq"]
    log.info("processed", extra={"batch": batch, "seq": seq, "doubled": tinydep.double(seq),
                                 "prefix": sys.prefix, "version": VERSION})


@router.on("ordinary/{n}", qos=1)
async def ordinary(n, payload, client):
    results = await asyncio.to_thread(run_checks)
    log.warning("ordinary code checked", extra={"n": n, "results": results,
                                                "state_directory":
                                                os.environ.get("STATE_DIRECTORY")})
