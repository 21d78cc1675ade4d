"""A booted Debian under systemd-nspawn, for the system tests (no mocks: a real PID 1).

    m = Machine("trixie"); m.start()      # overlay over the cached rootfs, boot, wait
    m.run("systemctl", "is-active", "x")  # nsenter into every namespace of the container
    m.stop()                              # poweroff, unmount, remove what start() made

The cached rootfs (scripts/nspawn-image.sh) is the lower layer of an overlayfs, so a run never
changes it. The container has only loopback (--private-network). This host's PID 1 is not
systemd and its cgroups are hybrid (v1 controllers + v2 "unified"): the container gets its
own sub-cgroups, and writable v1 memory/pids/cpu/cpuacct hierarchies are bound over the
read-only ones nspawn mounts, then PID 1 re-executes, so MemoryMax=/TasksMax=/CPUQuota= are
really enforced (without this they are configured but not applied).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

CACHE_DIR = Path(os.environ.get("ROUTEMQ_TEST_CACHE", "/var/cache/routemq-test"))
RUN_DIR = Path("/var/tmp/routemq-system")
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


class MachineError(Exception):
    pass


def _own_cgroup(controller: str) -> str | None:
    """This process's path in a cgroup hierarchy ("name=systemd", "memory", "" = unified)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if names == controller or controller in names.split(","):
            return path.rstrip("/")
    return None


def _host_hybrid() -> bool:
    # A pure cgroup2 mount has cgroup.controllers at its root; hybrid has v1 dirs + unified/.
    return Path("/sys/fs/cgroup/unified").is_dir() and \
        not Path("/sys/fs/cgroup/cgroup.controllers").exists()


class Machine:
    def __init__(self, suite: str, name: str | None = None) -> None:
        self.suite = suite
        self.name = name or f"routemq-{suite}-{os.getpid()}"
        self.rootfs = CACHE_DIR / f"rootfs-{suite}"
        self.dir = RUN_DIR / self.name
        self.root = self.dir / "root"
        self.log = self.dir.parent / f"{self.name}.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1: int | None = None
        self.cgroups: list[Path] = []
        self.binds: list[tuple[str, Path]] = []  # (controller, host cgroup dir)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        if not (self.rootfs / ".routemq-recipe").exists():
            raise MachineError(f"no cached rootfs {self.rootfs}: run scripts/nspawn-image.sh")
        self.dir.mkdir(parents=True, exist_ok=False)
        for sub in ("upper", "work", "root"):
            (self.dir / sub).mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.rootfs},upperdir={self.dir}/upper,"
                        f"workdir={self.dir}/work", str(self.root)], check=True)
        env = dict(os.environ)
        if _host_hybrid():
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "0"  # systemd 252/257 still boot hybrid
            for hierarchy, own in (("systemd", _own_cgroup("name=systemd")),
                                   ("unified", _own_cgroup(""))):
                if own is not None:
                    self.cgroups.append(Path(f"/sys/fs/cgroup/{hierarchy}{own}/{self.name}"))
            for controller in V1_CONTROLLERS:
                own = _own_cgroup(controller)
                if own is not None and Path(f"/sys/fs/cgroup/{controller}").is_dir():
                    path = Path(f"/sys/fs/cgroup/{controller}{own}/{self.name}")
                    self.cgroups.append(path)
                    self.binds.append((controller, path))
                    (self.root / "mnt/hostcg" / controller).mkdir(parents=True)
        for path in self.cgroups:
            path.mkdir(parents=True, exist_ok=True)
        cgroups = [p for p in self.cgroups if "/unified/" in str(p) or "/systemd/" in str(p)]

        def enter_cgroups() -> None:  # in the child, before exec: nspawn starts in ours
            for path in cgroups:
                (path / "cgroup.procs").write_text(str(os.getpid()))

        cmd = ["systemd-nspawn", "-q", "-D", str(self.root), "-b", "-M", self.name,
               "--register=no", "--keep-unit", "--console=read-only", "--private-network",
               *[f"--bind={path}:/mnt/hostcg/{c}" for c, path in self.binds]]
        with open(self.log, "wb") as log:
            self.nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, env=env,
                                           preexec_fn=enter_cgroups)
        (self.dir / "nspawn.pid").write_text(str(self.nspawn.pid))
        self._wait_running(timeout)
        (self.dir / "pid1.pid").write_text(str(self.pid1))  # for cleanup_stale()
        if self.binds:
            for controller, _ in self.binds:
                self.run("mount", "--bind", f"/mnt/hostcg/{controller}",
                         f"/sys/fs/cgroup/{controller}")
            self.run("systemctl", "daemon-reexec")  # PID 1 re-probes its controllers
            self._wait_running(timeout)

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.nspawn is None or self.nspawn.poll() is not None:
                raise MachineError(f"systemd-nspawn exited: {self.log.read_text()[-2000:]}")
            if self.pid1 is None:
                self.pid1 = self._find_pid1()
            if self.pid1 is not None:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.1)
        raise MachineError(f"{self.name}: not running after {timeout:.0f}s (state {state!r})")

    def _find_pid1(self) -> int | None:
        assert self.nspawn is not None
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return None
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return None

    def stop(self) -> None:
        """Power off, then undo everything start() did. Safe to call twice."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            if self.pid1 is not None:
                self.run("systemctl", "poweroff", check=False, timeout=10)
            try:
                self.nspawn.wait(30)
            except subprocess.TimeoutExpired:
                self.nspawn.send_signal(signal.SIGTERM)
                try:
                    self.nspawn.wait(10)
                except subprocess.TimeoutExpired:
                    self.nspawn.kill()
                    self.nspawn.wait()
        cleanup(self.dir, self.cgroups)
        if os.environ.get("ROUTEMQ_KEEP_LOGS") != "1":
            self.log.unlink(missing_ok=True)  # the console log, kept only on request
        self.nspawn = None
        self.pid1 = None

    # --- inside ----------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 120.0,
            input: str | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in the container (all namespaces, a clean environment)."""
        if self.pid1 is None:
            raise MachineError("machine not started")
        prefix = ["runuser", "-u", user, "--"] if user else []
        full = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", PATH, "HOME=/root",
                "LANG=C.UTF-8", *prefix, *cmd]
        # Own session: a `kill 0` (or a signal to the process group) inside cannot reach
        # the test runner, which would otherwise share the caller's process group.
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                                input=input, start_new_session=True)
        if check and result.returncode != 0:
            raise MachineError(f"{' '.join(cmd)} -> {result.returncode}\n"
                               f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
        return result

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, **kw)  # type: ignore[arg-type]

    def put(self, src: str | Path, dest: str) -> None:
        """Copy a host file or directory to an absolute path in the running container."""
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(src).is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)

    def write(self, dest: str, text: str) -> None:
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def cleanup(directory: Path, cgroups: Sequence[Path]) -> None:
    """Unmount and remove one machine's overlay and cgroups (its nspawn must be gone)."""
    root = directory / "root"
    if os.path.ismount(root):
        if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=False)
    shutil.rmtree(directory, ignore_errors=True)
    for path in cgroups:
        if path.is_dir():  # leaf-first: a cgroup is removed with rmdir once empty
            for sub in sorted((p for p in path.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            try:
                path.rmdir()
            except OSError:
                pass


def _named_cgroups(name: str) -> list[Path]:
    """Every cgroup directory start() may have made for machine `name`."""
    found = []
    for hierarchy, key in (("systemd", "name=systemd"), ("unified", ""),
                           *((c, c) for c in V1_CONTROLLERS)):
        own = _own_cgroup(key)
        if own is not None and Path(f"/sys/fs/cgroup/{hierarchy}{own}/{name}").is_dir():
            found.append(Path(f"/sys/fs/cgroup/{hierarchy}{own}/{name}"))
    return found


def _alive(pid: int) -> bool:
    """True for a running process; False for none or a zombie (an orphaned nspawn whose new
    parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def cleanup_stale() -> None:
    """Remove what an interrupted earlier run (test runner killed) left in RUN_DIR: its
    container's PID 1 if it outlived its nspawn, the overlay and the cgroups."""
    if not RUN_DIR.is_dir():
        return
    for directory in RUN_DIR.iterdir():
        if not directory.is_dir():
            continue
        try:
            if _alive(int((directory / "nspawn.pid").read_text())):
                continue  # still running: another run's machine, leave it alone
        except (OSError, ValueError):
            pass
        try:
            pid1 = int((directory / "pid1.pid").read_text())
            if Path(f"/proc/{pid1}/comm").read_text().strip() == "systemd" and \
                    os.readlink(f"/proc/{pid1}/ns/pid") != os.readlink("/proc/self/ns/pid"):
                os.kill(pid1, signal.SIGKILL)  # ends every process of that PID namespace
                for _ in range(100):  # the namespace's processes die first, then its init
                    if not Path(f"/proc/{pid1}").exists():
                        break
                    time.sleep(0.1)
        except (OSError, ValueError):
            pass
        cleanup(directory, _named_cgroups(directory.name))
        if os.environ.get("ROUTEMQ_KEEP_LOGS") != "1":
            (RUN_DIR / f"{directory.name}.log").unlink(missing_ok=True)
