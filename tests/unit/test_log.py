"""JSON lines, journal priority prefix, text on a TTY, level filtering (routemq.log)."""
import io
import json
import logging
import os
import pty
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from routemq.log import (get_logger, is_journal_stream, setup_logging, syslog_priority)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def restore_root_logger():
    """Each test configures the root logger; put back what pytest had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line]


def test_json_line_has_the_documented_fields():
    out = io.StringIO()
    setup_logging("INFO", fmt="json", worker_id=3, role="worker", stream=out)
    get_logger("routemq.worker").info("handled %d", 7, extra={
        "route": "sensors/{device_id}/data", "topic": "sensors/d1/data", "latency_ms": 1.5})
    [line] = json_lines(out.getvalue())
    assert list(line)[:6] == ["timestamp", "level", "logger", "message", "worker_id", "role"]
    assert line["level"] == "INFO" and line["logger"] == "routemq.worker"
    assert line["message"] == "handled 7"
    assert line["worker_id"] == 3 and line["role"] == "worker"
    assert line["route"] == "sensors/{device_id}/data" and line["topic"] == "sensors/d1/data"
    assert line["latency_ms"] == 1.5
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60


def test_json_leaves_out_record_internals_and_unset_context():
    out = io.StringIO()
    setup_logging("INFO", fmt="json", stream=out)
    logging.getLogger("x").info("plain")
    [line] = json_lines(out.getvalue())
    # taskName (Python 3.12+) is unknown to python-json-logger 2.0's reserved list.
    assert set(line) == {"timestamp", "level", "logger", "message"}


def test_exception_is_logged_with_traceback_on_one_line():
    out = io.StringIO()
    setup_logging("INFO", fmt="json", worker_id="2", stream=out)
    try:
        raise RuntimeError("handler broke")
    except RuntimeError:
        get_logger("routemq.worker").exception("handler failed",
                                               extra={"route": "r/+", "topic": "r/1"})
    text = out.getvalue()
    assert text.count("\n") == 1
    [line] = json_lines(text)
    assert line["level"] == "ERROR" and line["topic"] == "r/1" and line["worker_id"] == "2"
    assert "Traceback" in line["exc_info"] and "RuntimeError: handler broke" in line["exc_info"]


def test_multiline_message_stays_one_json_line():
    out = io.StringIO()
    setup_logging("INFO", fmt="json", stream=out)
    logging.getLogger("x").warning("first\nsecond")
    assert out.getvalue().count("\n") == 1
    assert json_lines(out.getvalue())[0]["message"] == "first\nsecond"


def test_json_through_a_real_pipe():
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w", encoding="utf-8") as writer:
        setup_logging("INFO", fmt="auto", role="master", stream=writer)  # a pipe: JSON
        logging.getLogger("routemq.master").info("planned", extra={"topic": "ä/ö"})
        logging.getLogger("routemq.master").error("oops")
        logging.getLogger().handlers[-1].flush()
    with os.fdopen(read_fd, encoding="utf-8") as reader:
        lines = json_lines(reader.read())
    assert [(l["level"], l["message"], l["role"]) for l in lines] == [
        ("INFO", "planned", "master"), ("ERROR", "oops", "master")]
    assert lines[0]["topic"] == "ä/ö"
    assert not lines[0]["timestamp"].startswith("<")


def journal_file(tmp_path):
    path = tmp_path / "journal"
    handle = open(path, "w", encoding="utf-8")
    info = os.fstat(handle.fileno())
    return handle, path, f"{info.st_dev}:{info.st_ino}"


def test_journal_stream_gets_priority_prefix_and_json(tmp_path, monkeypatch):
    handle, path, ident = journal_file(tmp_path)
    monkeypatch.setenv("JOURNAL_STREAM", ident)
    with handle:
        setup_logging("DEBUG", fmt="auto", worker_id=1, stream=handle)
        log = logging.getLogger("routemq.worker")
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                      logging.CRITICAL):
            log.log(level, "at %s", logging.getLevelName(level))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert [json.loads(line[3:])["message"] for line in lines] == [
        "at DEBUG", "at INFO", "at WARNING", "at ERROR", "at CRITICAL"]


def test_journal_text_prefixes_every_line_of_a_traceback(tmp_path):
    handle, path, ident = journal_file(tmp_path)
    with handle:
        setup_logging("INFO", fmt="text", stream=handle, environ={"JOURNAL_STREAM": ident})
        try:
            raise ValueError("x")
        except ValueError:
            logging.getLogger("t").exception("failed")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)


def test_journal_stream_of_another_file_is_ignored(tmp_path):
    handle, _, ident = journal_file(tmp_path)
    other = open(tmp_path / "other", "w", encoding="utf-8")
    with handle, other:
        assert is_journal_stream(handle, {"JOURNAL_STREAM": ident})
        assert not is_journal_stream(other, {"JOURNAL_STREAM": ident})
        assert not is_journal_stream(handle, {"JOURNAL_STREAM": "garbage"})
        assert not is_journal_stream(handle, {})
        assert not is_journal_stream(io.StringIO(), {"JOURNAL_STREAM": ident})
        setup_logging("INFO", stream=other, environ={"JOURNAL_STREAM": ident})
        logging.getLogger("t").warning("not the journal")
    assert (tmp_path / "other").read_text().startswith("{")


def test_syslog_priority_of_custom_levels():
    assert syslog_priority(5) == 7 and syslog_priority(25) == 6 and syslog_priority(45) == 3
    assert syslog_priority(100) == 2


def test_tty_gets_readable_text():
    master_fd, slave_fd = pty.openpty()
    try:
        with os.fdopen(slave_fd, "w", encoding="utf-8") as tty:
            setup_logging("INFO", fmt="auto", worker_id=3, role="worker", stream=tty)
            logging.getLogger("routemq.worker").info(
                "message", extra={"route": "sensors/{id}", "topic": "sensors/1"})
            tty.flush()
            text = os.read(master_fd, 4096).decode()
    finally:
        os.close(master_fd)
    assert not text.startswith("{")
    line = text.splitlines()[0].rstrip("\r")
    stamp, rest = line[:19], line[20:]
    datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    assert rest == "INFO worker[3] routemq.worker: message (route=sensors/{id}, topic=sensors/1)"


def test_forced_text_and_json():
    out = io.StringIO()
    setup_logging("INFO", fmt="text", role="master", stream=out)
    logging.getLogger("routemq.master").info("ready")
    assert out.getvalue().rstrip().endswith("INFO master routemq.master: ready")
    out = io.StringIO()
    setup_logging("INFO", fmt="text", stream=out)
    logging.getLogger("a").info("b")
    assert out.getvalue().rstrip().endswith(" INFO a: b")
    with pytest.raises(ValueError, match="auto, json or text"):
        setup_logging("INFO", fmt="xml", stream=out)


def test_level_filtering_skips_formatting():
    class Costly:
        calls = 0

        def __str__(self):
            Costly.calls += 1
            return "costly"

    out = io.StringIO()
    setup_logging("warning", fmt="json", stream=out)
    log = logging.getLogger("routemq.worker")
    log.debug("%s", Costly())
    log.info("%s", Costly())
    assert Costly.calls == 0 and out.getvalue() == ""
    log.warning("%s", Costly())
    # pytest's own capture handlers format it too, hence >= 1.
    assert Costly.calls >= 1 and json_lines(out.getvalue())[0]["message"] == "costly"


def test_bad_level_is_rejected():
    with pytest.raises(ValueError, match="VERBOSE"):
        setup_logging("VERBOSE", stream=io.StringIO())


def test_setup_twice_keeps_one_handler():
    first, second = io.StringIO(), io.StringIO()
    before = len(logging.getLogger().handlers)
    setup_logging("INFO", fmt="json", stream=first)
    setup_logging("DEBUG", fmt="json", worker_id=9, stream=second)
    assert len(logging.getLogger().handlers) == before + 1
    logging.getLogger("x").debug("once")
    assert first.getvalue() == ""
    [line] = json_lines(second.getvalue())
    assert line["message"] == "once" and line["worker_id"] == 9


def test_default_stream_is_stdout(capsys):
    setup_logging("INFO", fmt="json")
    logging.getLogger("x").info("to stdout")
    assert json_lines(capsys.readouterr().out)[0]["message"] == "to stdout"


def test_import_warns_about_nothing():
    code = ("import logging, io; from routemq.log import setup_logging; "
            "setup_logging(stream=io.StringIO()); logging.getLogger('x').info('y')")
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT,
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
