"""sd_notify for the master and workers: READY, STATUS, WATCHDOG, STOPPING, RELOADING.

A thin layer over `sdnotify`. Nothing is sent when NOTIFY_SOCKET is unset (not under
systemd), and the watchdog interval comes from systemd's WATCHDOG_USEC, so a process run
by hand behaves the same minus the notifications.
"""
from __future__ import annotations

import os
from typing import Mapping

import sdnotify


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self.watchdog_interval = _watchdog_interval(env)
        self.last_status = ""

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        if text != self.last_status:  # identical STATUS= lines are noise for PID 1
            self.last_status = text
            self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> None:
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        self.send("RELOADING=1")


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of WatchdogSec, or None when the watchdog is off or
    meant for another process (WATCHDOG_PID names a different pid)."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1e6 / 2, 0.05)
    except ValueError:
        return None


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: without the notify socket and watchdog, which
    belong to this process alone (systemd's NotifyAccess=main would reject the child)."""
    env = dict(os.environ if environ is None else environ)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    return env
