"""The package under a real booted systemd (Debian 13 trixie and 12 bookworm, nspawn).

The tests run in file order on one machine per suite and build on each other, as an
operator's session would: install, configure, start, load, break things, purge.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import pytest

from system_helpers import (APP, DEB_IN_MACHINE, ROOT, Journal, health_writes, plan, publish,
                            show, status, unit_state, wait_until)
from machine import Machine
from tests.helpers import routes_by_key

WORKERS = [f"routemq-worker@{i}.service" for i in range(1, 5)]
CONF_D = "/etc/routemq/conf.d"


def wanted_workers(m: Machine) -> set[int]:
    wants = show(m, "routemq.target", "Wants")["Wants"].split()
    return {int(u.split("@")[1].split(".")[0]) for u in wants if u.startswith("routemq-worker@")}


def owners(m: Machine, route_key: str) -> list[int]:
    return list(plan(m)["routes"].get(route_key, []))


def memory_limit(m: Machine, pid: str) -> int:
    """The memory limit the kernel applies to pid's cgroup (cgroup v1 or v2)."""
    for line in m.run("cat", f"/proc/{pid}/cgroup").stdout.splitlines():
        _, names, path = line.split(":", 2)
        if "memory" in names.split(","):
            # v1 without a cgroup namespace root: the path still starts with the machine's
            # own cgroup, which is what is bound on /sys/fs/cgroup/memory inside.
            path = path.removeprefix(f"/{m.name}")
            return int(m.run("cat", f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").stdout)
    path = m.run("sh", "-c", f"sed -n 's/^0:://p' /proc/{pid}/cgroup").stdout.strip()
    return int(m.run("cat", f"/sys/fs/cgroup{path}/memory.max").stdout)


def restarts(m: Machine, unit: str) -> int:
    return int(show(m, unit, "NRestarts")["NRestarts"] or 0)


def test_install_pulls_dependencies_from_the_archive(machine: Machine) -> None:
    m = machine
    before = m.run("dpkg-query", "-W", "-f=${Status}", "python3-paho-mqtt", check=False).stdout
    assert "ok installed" not in before  # the image only has the .debs in apt's cache
    out = m.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                "--no-install-recommends", DEB_IN_MACHINE).stdout
    for dep in ("python3-paho-mqtt", "python3-sdnotify", "python3-pythonjsonlogger",
                "python3-configargparse"):
        assert f"Setting up {dep}" in out, out
    assert m.run("id", "-u", "routemq").stdout.strip().isdigit()
    assert m.run("stat", "-c", "%U %a", "/run/routemq").stdout.split() == ["routemq", "755"]
    assert m.run("stat", "-c", "%U", "/srv/routemq").stdout.strip() == "root"
    # Nothing starts before the operator configured a broker and an application.
    assert unit_state(m, "routemq-master.service") == "inactive"
    units = [f"/lib/systemd/system/{u}" for u in
             ("routemq.target", "routemq-master.service", "routemq-worker@.service")]
    verify = m.run("systemd-analyze", "verify", "--man=no", *units, check=False)
    assert verify.returncode == 0 and "routemq" not in verify.stderr, verify.stderr


def test_conffile_lists_every_key_with_its_default(machine: Machine) -> None:
    m = machine
    check = subprocess.run(["/usr/bin/python3", str(ROOT / "scripts" / "conffile.py"),
                            "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    shipped = m.run("cat", "/etc/routemq/routemq.conf").stdout
    assert shipped == (ROOT / "etc" / "routemq" / "routemq.conf").read_text()
    conffiles = m.run("dpkg-query", "-W", "-f=${Conffiles}", "routemq").stdout
    assert "/etc/routemq/routemq.conf" in conffiles
    effective = json.loads(m.run("routemq", "config", "--json").stdout)
    assert effective["worker_count"]["value"] == "auto"


def test_generator_wants_instances_from_worker_count(machine: Machine) -> None:
    m = machine
    m.put(APP, "/srv/routemq/app")
    m.write(f"{CONF_D}/10-test.conf", "mqtt_broker = 127.0.0.1\nworker_count = 3\n")
    m.run("systemctl", "daemon-reload")
    assert wanted_workers(m) == {1, 2, 3}
    # "auto": the largest worker_count of the application's shared routes (work/{batch}: 4)
    m.write(f"{CONF_D}/10-test.conf", "mqtt_broker = 127.0.0.1\n")
    m.run("systemctl", "daemon-reload")
    assert wanted_workers(m) == {1, 2, 3, 4}
    # What an operator runs before starting: the application as a worker loads it.
    check = m.sh("cd /srv/routemq && routemq check", user="routemq").stdout.splitlines()
    assert check[-1].startswith("ok: ") and "plan for 4 instances" in check[-1], check


def test_start_four_workers_starts_the_master(machine: Machine) -> None:
    m = machine
    m.run("systemctl", "start", *WORKERS, timeout=90)
    states = {u: unit_state(m, u) for u in ["routemq-master.service", *WORKERS]}
    assert set(states.values()) == {"active"}, states
    for unit in ["routemq-master.service", *WORKERS]:
        status = show(m, unit, "StatusText")["StatusText"]
        assert status, f"{unit} has no STATUS= line"
    assert sorted(int(i) for i in plan(m)["instances"]) == [1, 2, 3, 4]


def test_shared_route_is_spread_over_the_four(machine: Machine) -> None:
    m = machine
    journal = Journal(m)
    publish(m, "work/spread", 400)
    got = journal.wait_processed("spread", range(1, 401), 60)
    assert sorted(got) == [1, 2, 3, 4], got.keys()
    assert min(len(s) for s in got.values()) >= 50, {w: len(s) for w, s in got.items()}


def test_journal_holds_json_records_and_handler_errors(machine: Machine) -> None:
    m = machine
    journal = Journal(m)
    records = journal.records("-u", "routemq-worker@*")
    assert records
    assert all("worker_id" in r and "level" in r for _, r in records)
    assert any("route" in r for _, r in records)
    assert {e.get("ROUTEMQ_WORKER") for e, _ in records} >= {"1", "2", "3", "4"}
    publish(m, "fail/7", 1, qos=0)

    def error_record() -> list[dict[str, str]]:
        return [r for _, r in Journal(m).records("-p", "warning", "-u", "routemq-worker@*")
                if "deliberate failure 7" in json.dumps(r)]
    found = wait_until(error_record, 20, "the failing handler's error in journalctl -p warning")
    assert found[0]["level"] == "ERROR" and found[0].get("route") == "fail/{n}", found[0]


def test_kill_9_restarts_and_loses_no_qos1_message(machine: Machine) -> None:
    m = machine
    unit = "routemq-worker@2.service"
    before = restarts(m, unit)
    pid = show(m, unit, "MainPID")["MainPID"]
    assert pid != "0", f"{unit} is not running"
    # The backlog queued for the dead instance (its share of both batches, ~600) stays under
    # mosquitto's max_queued_messages (1000), past which the broker drops messages silently.
    publisher = threading.Thread(target=publish, args=(m, "work/kill", 2000))
    publisher.start()
    time.sleep(0.3)
    m.run("kill", "-9", pid)
    publisher.join()
    publish(m, "work/kill", 400, start=2001)  # while @2 restarts: queued in its session
    wait_until(lambda: restarts(m, unit) > before, 30, f"{unit} NRestarts to grow")
    wait_until(lambda: unit_state(m, unit) == "active", 60, f"{unit} active again")
    journal = Journal(m)
    got = journal.wait_processed(
        "kill", range(1, 2401), 90,
        diagnose="cat /run/routemq/workers/2.json; tail -n 30 /var/log/mosquitto/mosquitto.log;"
                 " journalctl --no-pager -o short-precise -u routemq-worker@2"
                 " | grep -v '\"processed\"' | tail -n 30")
    assert 2 in got  # the killed instance processed its share after the restart
    assert show(m, unit, "MainPID")["MainPID"] != pid


def test_blocked_loop_is_restarted_by_the_watchdog(machine: Machine) -> None:
    m = machine
    [blocked] = owners(m, "single:block/{n}")
    unit = f"routemq-worker@{blocked}.service"
    others = [u for u in WORKERS if u != unit]
    before = {u: restarts(m, u) for u in WORKERS}
    publish(m, "block/1", 1, qos=0)
    time.sleep(1)
    publish(m, "work/watchdog", 200)  # the others keep processing meanwhile
    wait_until(lambda: restarts(m, unit) > before[unit], 40, f"{unit} watchdog restart")
    log = m.run("journalctl", "--no-pager", "-u", unit).stdout
    assert "Watchdog timeout" in log
    after = {u: restarts(m, u) for u in others}
    assert after == {u: before[u] for u in others}, (
        blocked, plan(m), m.sh("journalctl --no-pager -o short-precise -u 'routemq-worker@*'"
                               " -u routemq-master | grep -v processed | tail -n 60").stdout)
    journal = Journal(m)
    got = journal.wait_processed("watchdog", range(1, 201), 60)
    assert len(got) >= 3


def test_memory_max_is_enforced_and_limits_applied(machine: Machine) -> None:
    m = machine
    [hog] = owners(m, "single:hog/{mb}")
    unit = f"routemq-worker@{hog}.service"
    m.write("/etc/systemd/system/routemq-worker@.service.d/50-test.conf",
            "[Service]\nMemoryMax=150M\n")
    m.run("systemctl", "daemon-reload")
    props = show(m, unit, "MemoryMax", "LimitNOFILE", "TasksMax", "MainPID")
    assert props["MemoryMax"] == str(150 << 20)  # the drop-in overrides the unit's 512M
    # Apply it to the running process without a restart (a restart would let the master move
    # the route elsewhere); systemd 257 does not re-apply cgroup limits on daemon-reload.
    m.run("systemctl", "set-property", "--runtime", unit, "MemoryMax=150M")
    assert props["LimitNOFILE"] == "16384"
    limits = m.run("cat", f"/proc/{props['MainPID']}/limits").stdout
    assert re.search(r"^Max open files\s+16384\s+16384", limits, re.M), limits
    wait_until(lambda: memory_limit(m, props["MainPID"]) == 150 << 20, 10,
               "the kernel's memory limit of the unit's cgroup to be 150M")
    assert owners(m, "single:hog/{mb}") == [hog]
    before = restarts(m, unit)
    publish(m, "hog/400", 1, qos=0)
    if not wait_until(lambda: restarts(m, unit) > before, 40, f"{unit} restarted after the hog",
                      fail=False):
        pytest.fail(f"{unit} was not restarted after the hog: " + m.sh(
            f"systemctl status --no-pager {unit}; journalctl --no-pager -n 25 -u {unit}",
            check=False).stdout[-4000:])
    log = m.run("journalctl", "--no-pager", "-u", unit).stdout
    assert "allocating 400 MiB" in log
    assert "allocated 400 MiB" not in log  # killed before the allocation finished
    assert re.search(r"oom|status=9/KILL", log, re.I), log[-2000:]
    # The kill came from the memory cgroup of this unit in this machine (host kernel log).
    kernel = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    assert re.search(rf"oom_memcg=\S*/{re.escape(m.name)}/\S*routemq-worker@{hog}\.service",
                     kernel), "no memory-cgroup OOM kill of the unit in the kernel log"
    wait_until(lambda: unit_state(m, unit) == "active", 60, f"{unit} active again")


def test_stop_drains_and_master_moves_routes_start_joins(machine: Machine) -> None:
    m = machine
    [held_by] = owners(m, "single:fail/{n}")
    stop = f"routemq-worker@{held_by}.service"
    m.run("systemctl", "stop", stop, timeout=60)
    assert show(m, stop, "ActiveState", "Result") == {"ActiveState": "inactive",
                                                      "Result": "success"}
    assert f"worker {held_by} stopped" in m.run("journalctl", "--no-pager", "-u", stop).stdout
    wait_until(lambda: str(held_by) not in plan(m)["instances"], 20,
               f"the master to drop instance {held_by} from the plan")
    [new_owner] = owners(m, "single:fail/{n}")
    assert new_owner != held_by
    m.run("systemctl", "start", "routemq-worker@5.service", timeout=90)
    wait_until(lambda: "5" in plan(m)["instances"], 20, "instance 5 in the plan")
    assert 5 in owners(m, "shared:work/{batch}")
    m.run("systemctl", "start", stop, timeout=90)  # back to the fleet the next tests expect
    wait_until(lambda: str(held_by) in plan(m)["instances"], 20, f"instance {held_by} back")
    # Its broker session still had the plain route's filter from before the stop: the route
    # must run on one instance only (the worker unsubscribes what it no longer holds).
    wait_until(lambda: (doc := status(m))["health"]["status"] == "healthy" and not any(
        r["mismatch"] for r in routes_by_key(doc).values()), 30,
        "the plan hand-over: healthy, every route held where planned")
    publish(m, "fail/once", 1, qos=0)

    def runs() -> set[str]:
        return {e.get("ROUTEMQ_WORKER") for e, r in Journal(m).records("-u", "routemq-worker@*")
                if "deliberate failure once" in json.dumps(r)}
    wait_until(runs, 20, "the plain route's handler running on fail/once")
    health_writes(m, [int(i) for i in plan(m)["instances"]], 2)  # a second runner shows by now
    assert len(runs()) == 1, f"plain route fail/{{n}} ran on instances {sorted(runs())}"


def test_broken_config_fails_once_without_restart_loop(machine: Machine) -> None:
    m = machine
    m.write(f"{CONF_D}/99-broken.conf", "mqtt_port = not-a-port\n")
    try:
        unit = "routemq-worker@7.service"
        started = m.run("systemctl", "start", unit, check=False, timeout=60)
        assert started.returncode != 0
        health_writes(m, range(1, 5), 3)  # 3 s in the machine: a restart loop shows by now
        props = show(m, unit, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
        assert props == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "2",
                         "NRestarts": "0"}, props
        log = m.run("journalctl", "--no-pager", "-u", unit).stdout
        assert "config error: mqtt_port" in log and "99-broken.conf" in log, log
        master = "routemq-master.service"
        assert m.run("systemctl", "restart", master, check=False, timeout=60).returncode != 0
        health_writes(m, range(1, 5), 3)  # RestartSec=1: a restart loop shows by now
        props = show(m, master, "ActiveState", "ExecMainStatus", "NRestarts")
        assert props == {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}, props
        # The running workers do not depend on the master being up (Wants=, not Requires=).
        assert all(unit_state(m, u) == "active" for u in WORKERS)
    finally:
        m.run("rm", "-f", f"{CONF_D}/99-broken.conf")
        m.run("systemctl", "reset-failed", "routemq-worker@7.service", check=False)
        m.run("systemctl", "reset-failed", "routemq-master.service", check=False)
        m.run("systemctl", "start", "routemq-master.service", check=False, timeout=60)
    assert unit_state(m, "routemq-master.service") == "active"


def test_status_shows_the_fleet(machine: Machine) -> None:
    m = machine
    text = m.run("routemq", "status").stdout
    for i in (1, 2, 3, 4, 5):
        assert re.search(rf"^{i}\s+\d+\s+yes\s", text, re.M), text
    doc = status(m)
    alive = {w["instance"] for w in doc["workers"] if w["alive"]}
    assert alive == {1, 2, 3, 4, 5}, doc["workers"]
    assert doc["health"]["status"] == "healthy", doc["health"]
    assert doc["backend"] == "systemd"
    units = {w["instance"]: w["unit"] for w in doc["workers"]}
    assert all(units[i]["active_state"] == "active" for i in alive), units


def test_upgrade_restarts_what_was_running(machine: Machine) -> None:
    m = machine
    units = ["routemq-master.service", *WORKERS]
    before = {u: show(m, u, "MainPID")["MainPID"] for u in units}
    m.run("env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i", DEB_IN_MACHINE, timeout=180)
    after = {u: show(m, u, "MainPID", "ActiveState") for u in units}
    assert all(a["ActiveState"] == "active" for a in after.values()), after
    assert all(after[u]["MainPID"] != before[u] for u in units), (before, after)
    assert show(m, "routemq-worker@6.service", "ActiveState")["ActiveState"] == "inactive"


def test_password_comes_from_a_systemd_credential(machine: Machine) -> None:
    """mosquitto refuses user routemq without its password (see the machine fixture); a
    worker started with only MQTT_USERNAME in a drop-in gets the password from
    /etc/credstore/mqtt_password through LoadCredential=, never from its environment."""
    m = machine
    for password in ([], ["-P", "wrong"]):
        refused = m.run("mosquitto_pub", "-h", "127.0.0.1", "-u", "routemq", *password,
                        "-t", "x", "-m", "x", check=False)
        assert refused.returncode != 0
    m.run("install", "-d", "-m", "0700", "/etc/credstore")
    m.run("sh", "-c", "umask 077; printf %s 's3cret-pw' > /etc/credstore/mqtt_password")
    m.write("/etc/systemd/system/routemq-worker@8.service.d/auth.conf",
            "[Service]\nEnvironment=MQTT_USERNAME=routemq\n")
    m.run("systemctl", "daemon-reload")
    unit = "routemq-worker@8.service"
    try:
        m.run("systemctl", "start", unit, timeout=90)  # READY=1 only after the SUBACK
        props = show(m, unit, "ActiveState", "MainPID", "Environment")
        assert props["ActiveState"] == "active"
        assert "s3cret" not in props["Environment"]
        environ = m.run("cat", f"/proc/{props['MainPID']}/environ").stdout
        assert "s3cret" not in environ and "CREDENTIALS_DIRECTORY=" in environ
    finally:
        m.run("systemctl", "stop", unit, timeout=60, check=False)
        m.run("rm", "-rf", "/etc/systemd/system/routemq-worker@8.service.d")
        m.run("systemctl", "daemon-reload")


def test_polkit_lets_routemq_manage_only_worker_instances(machine: Machine) -> None:
    m = machine
    m.run("systemctl", "start", "routemq-worker@6.service", user="routemq", timeout=90)
    assert unit_state(m, "routemq-worker@6.service") == "active"
    m.run("systemctl", "stop", "routemq-worker@6.service", user="routemq", timeout=60)
    denied = m.run("systemctl", "stop", "mosquitto.service", user="routemq", check=False)
    assert denied.returncode != 0
    assert unit_state(m, "mosquitto") == "active"
    denied = m.run("systemctl", "restart", "routemq-master.service", user="routemq",
                   check=False)
    assert denied.returncode != 0
    # Instance numbers stop at 64 (routemq's MAX_INSTANCES): a handler cannot start more.
    denied = m.run("systemctl", "start", "routemq-worker@65.service", user="routemq",
                   check=False)
    assert denied.returncode != 0
    # Had polkit allowed it, the instance would have run and failed (exit 2: --instance 65).
    assert unit_state(m, "routemq-worker@65.service") == "inactive"


def test_filtered_system_calls_raise_permission_error(machine: Machine) -> None:
    """SystemCallFilter=~@privileged @resources (setpriority and setrlimit allowed again)
    with SystemCallErrorNumber=EPERM: os.nice(1) works; a handler's sched_setaffinity() or
    chown() raises PermissionError; the worker keeps running (without EPERM the kernel kills
    it with SIGSYS)."""
    m = machine
    [owner] = owners(m, "single:syscalls/{n}")
    unit = f"routemq-worker@{owner}.service"
    before = show(m, unit, "MainPID", "NRestarts")
    publish(m, "syscalls/1", 1, qos=0)

    def tried() -> list[dict[str, object]]:
        return [r for _, r in Journal(m).records("-u", unit)
                if r.get("message") == "privileged calls tried" and r.get("n") == "1"]
    [record] = wait_until(tried, 30, "the syscalls handler's record")
    assert record["raised"] == {"nice": "nothing", "sched_setaffinity": "PermissionError",
                                "chown": "PermissionError"}, record
    assert show(m, unit, "MainPID", "NRestarts") == before
    assert unit_state(m, unit) == "active"


@pytest.mark.parametrize("unit", ["routemq-master.service", "routemq-worker@1.service"])
def test_security_exposure_at_most_2(machine: Machine, unit: str) -> None:
    out = machine.run("systemd-analyze", "security", "--no-pager", unit).stdout
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert level, out[-500:]
    assert float(level.group(1)) <= 2.0, out
    print(f"{machine.suite} {unit}: exposure {level.group(1)}")


def test_target_stops_and_starts_the_whole_fleet(machine: Machine) -> None:
    """PartOf=routemq.target: stopping it stops every instance; starting it starts the
    master and the instances the generator wants (1..4). Near the end: a fleet restart
    re-plans, and a route that moved while its old instance was down is still in that
    instance's broker session (see pending_checks.py)."""
    m = machine
    units = ["routemq-master.service", *WORKERS]

    def states() -> set[str]:
        return set(m.run("systemctl", "is-active", *units, check=False).stdout.split())
    # `systemctl stop` returns once the target's own job is done; the instances drain after.
    m.run("systemctl", "stop", "routemq.target", timeout=90)
    wait_until(lambda: states() == {"inactive"}, 60, "every instance stopped")
    m.run("systemctl", "start", "routemq.target", timeout=90)
    wait_until(lambda: states() == {"active"}, 60, "every instance active again")
    assert {u: restarts(m, u) for u in units} == {u: 0 for u in units}


def test_autoscaler_starts_and_stops_worker_units(machine: Machine) -> None:
    """autoscale = true: under load the master (user routemq, allowed by the polkit rule)
    starts routemq-worker@5 and @6 through systemd, and stops them again when idle."""
    m = machine
    conf = f"{CONF_D}/20-autoscale.conf"
    since = m.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    m.write(conf, "autoscale = true\nmin_workers = 4\nmax_workers = 6\n"
                  "target_rate_per_worker = 5\nscale_interval = 1\nscale_cooldown = 3\n")
    m.run("systemctl", "restart", "routemq-master.service", timeout=60)
    done = threading.Event()

    def load() -> None:  # ~100 messages/s (ceil(100 / 5) x 0.7 at low CPU > 6) while it runs
        k = 0
        while not done.is_set():
            publish(m, "work/auto", 30, qos=0, start=k)
            k += 30
            time.sleep(0.2)
    feeder = threading.Thread(target=load, daemon=True)
    feeder.start()
    try:
        grown = wait_until(lambda: {"5", "6"} <= set(plan(m)["instances"]), 60,
                           "the autoscaler to add instances 5 and 6 under load", fail=False)
        assert grown, (m.run("cat", "/run/routemq/master.json").stdout, feeder.is_alive(),
                       m.run("journalctl", "--no-pager", "--since", since, "-u",
                             "routemq-master").stdout[-3000:])
        for unit in ("routemq-worker@5.service", "routemq-worker@6.service"):
            wait_until(lambda: show(m, unit, "ActiveState")["ActiveState"] == "active", 30,
                       f"{unit} active (READY=1 after its SUBACK)")
    finally:
        done.set()
        feeder.join(30)
    wait_until(lambda: set(plan(m)["instances"]) == {"1", "2", "3", "4"}, 90,
               "the autoscaler to go back to min_workers when idle")
    wait_until(lambda: m.run("systemctl", "is-active", "routemq-worker@5.service",
                             "routemq-worker@6.service", check=False).stdout.split()
               == ["inactive", "inactive"], 60, "instances 5 and 6 stopped")
    journal = m.run("journalctl", "--no-pager", "-u", "routemq-master").stdout
    assert re.search(r"autoscaler: 4 -> [56] workers: rate", journal), journal[-3000:]
    assert re.search(r"autoscaler: [56] -> 4 workers: rate", journal), journal[-3000:]
    m.run("rm", conf)
    m.run("systemctl", "restart", "routemq-master.service", timeout=60)


def test_purge_stops_everything_and_keeps_srv(machine: Machine) -> None:
    m = machine
    m.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "routemq",
          timeout=120)
    units = m.run("systemctl", "list-units", "--all", "--plain", "--no-legend",
                  "routemq*").stdout
    assert not [line for line in units.splitlines() if " active " in line], units
    assert m.run("pgrep", "-u", "routemq", check=False).returncode == 1
    for gone in ("/lib/systemd/system/routemq-worker@.service",
                 "/lib/systemd/system-generators/routemq-generator",
                 "/etc/routemq/routemq.conf",
                 "/run/routemq", "/usr/bin/routemq"):
        assert m.run("test", "-e", gone, check=False).returncode == 1, gone
    assert m.run("test", "-f", "/srv/routemq/app/routers/system.py",
                 check=False).returncode == 0
