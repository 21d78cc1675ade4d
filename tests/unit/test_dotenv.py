"""The application's .env: its parser (routemq.dotenv) and its layer in load_config."""
import os
from pathlib import Path

import pytest

from routemq.config import DOTENV_EXPORTED, _export_dotenv, load_config
from routemq.dotenv import DotenvValue, parse_dotenv
from routemq.errors import ConfigError

# What RouteMQ 0.25's `routemq new` writes (its first lines), plus the syntax users add.
TEXT = """\ufeff# MQTT Configuration
MQTT_BROKER=localhost
MQTT_PORT=1883
MQTT_USERNAME=
export MQTT_GROUP_NAME = routemq_group   # inline comment
LOG_FORMAT=%(asctime)s - %(name)s - %(levelname)s - %(message)s
HASH=a#b
SINGLE='keeps \\n and # as typed'  # comment
DOUBLE="tab\\there \\"quoted\\" \\\\ ${NOT_EXPANDED}"
MQTT_PORT=1884
"""


def values(entries):
    return {name: entry.value for name, entry in entries.items()}


def test_parses_routemq_new_syntax_and_quotes():
    entries = parse_dotenv(TEXT, "/p/.env")
    assert values(entries) == {
        "MQTT_BROKER": "localhost", "MQTT_PORT": "1884", "MQTT_USERNAME": "",
        "MQTT_GROUP_NAME": "routemq_group",
        "LOG_FORMAT": "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
        "HASH": "a#b", "SINGLE": "keeps \\n and # as typed",
        "DOUBLE": 'tab\there "quoted" \\ ${NOT_EXPANDED}'}
    assert entries["MQTT_PORT"] == DotenvValue("1884", 10)  # the last one wins, its line


@pytest.mark.parametrize("line, reason", [
    ("JUST_A_NAME", "line 2: expected NAME=VALUE"),
    ("1BAD=x", "line 2: expected NAME=VALUE"),
    ("SPACE IN=x", "line 2: expected NAME=VALUE"),
    ('OPEN="never closed', 'OPEN in /app/.env line 2: unterminated " quote'),
    ("AFTER='x' y", "AFTER in /app/.env line 2: text after the closing quote"),
])
def test_malformed_line_names_file_and_line(line, reason):
    with pytest.raises(ConfigError) as err:
        parse_dotenv(f"OK=1\n{line}\n", "/app/.env")
    assert reason in str(err.value) and "/app/.env" in str(err.value)
    assert "\n" not in str(err.value)


# -- the layer in load_config ----------------------------------------------------------------

@pytest.fixture
def app(tmp_path, monkeypatch):
    """An application root as the cwd, with conf.d and a main config file of its own."""
    root = tmp_path / "app"
    (root / "conf.d").mkdir(parents=True)
    (root / "main.conf").write_text("")
    monkeypatch.chdir(root)
    return root


def load(root: Path, env=None, argv=()):
    environ = {"ROUTEMQ_CONFIG": str(root / "main.conf"),
               "ROUTEMQ_CONFIG_DIR": str(root / "conf.d"), **(env or {})}
    return load_config(list(argv), environ)


def test_precedence_cli_env_dotenv_confd_main(app):
    (app / "main.conf").write_text("mqtt_port = 1001\nmqtt_group_name = main\n"
                                   "log_level = debug\nkeepalive = 11\n")
    (app / "conf.d" / "a.conf").write_text("mqtt_port = 1002\nmqtt_group_name = confd\n"
                                           "log_level = warning\n")
    (app / ".env").write_text("MQTT_PORT=1003\nMQTT_GROUP_NAME=dotenv\nTIMEZONE=Asia/Jakarta\n")
    config = load(app, {"MQTT_PORT": "1004"}, ["--mqtt-port", "1005"])
    assert config.mqtt_port == 1005 and config.sources["mqtt_port"] == "command line"
    config = load(app, {"MQTT_PORT": "1004"})
    assert config.mqtt_port == 1004 and config.sources["mqtt_port"] == "environment MQTT_PORT"
    assert config.mqtt_group_name == "dotenv"
    assert config.sources["mqtt_group_name"] == \
        f"env file {app / '.env'} line 2 (MQTT_GROUP_NAME)"
    assert (config.log_level, config.keepalive) == ("WARNING", 11)  # below: files as before


def test_dotenv_is_read_from_app_root_not_cwd(app, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / ".env").write_text("MQTT_GROUP_NAME=other\n")
    (app / ".env").write_text("MQTT_GROUP_NAME=cwd\n")
    assert load(app, {"ROUTEMQ_APP_ROOT": str(other)}).mqtt_group_name == "other"
    assert load(app, argv=["--app-root", str(other)]).mqtt_group_name == "other"
    assert load(app).mqtt_group_name == "cwd"


def test_bad_value_names_the_dotenv_line(app):
    (app / ".env").write_text("# settings\nMQTT_PORT=http\n")
    with pytest.raises(ConfigError) as err:
        load(app)
    assert str(err.value) == (f'routemq: config error: mqtt_port = "http" in {app}/.env '
                              "line 2 (MQTT_PORT): not an integer")


@pytest.mark.parametrize("name", ["ROUTEMQ_APP_ROOT", "ROUTEMQ_CONFIG", "ROUTEMQ_CONFIG_DIR"])
def test_names_that_choose_the_files_cannot_be_in_dotenv(app, name):
    (app / ".env").write_text(f"{name}=/elsewhere\n")
    with pytest.raises(ConfigError, match=f"{name} in {app}/.env line 1: cannot be set"):
        load(app)


def test_unreadable_dotenv_is_a_config_error(app):
    os.mkfifo(app / ".env")  # opening it would block the start
    with pytest.raises(ConfigError, match=r"env file .*/\.env: cannot read: not a regular"):
        load(app)


def test_empty_password_in_dotenv_is_unset_and_not_warned(app):
    (app / ".env").write_text("MQTT_USERNAME=\nMQTT_PASSWORD=\n")
    config = load(app)
    assert (config.mqtt_username, config.password, config.warnings) == (None, None, [])
    (app / ".env").write_text("MQTT_PASSWORD=s3cret\n")
    (app / ".env").chmod(0o644)
    config = load(app)
    assert config.password == "s3cret"
    assert config.warnings == [f"mqtt_password is in {app}/.env, which every local user can "
                               "read; chmod 640 it, or use mqtt_password_file or a systemd "
                               "credential"]


def test_export_gives_the_application_its_own_names_never_over_real_ones():
    env = {"REAL": "from the environment", "MQTT_BROKER": "real-broker"}
    dotenv = ("/p/.env", parse_dotenv("REAL=dotenv\nDB_HOST=db1\nMQTT_BROKER=x\nAPI=k\n",
                                      "/p/.env"))
    _export_dotenv(dotenv, env)
    # Our keys stay out: every process reads them from the .env itself, below its real env.
    assert env == {"REAL": "from the environment", "MQTT_BROKER": "real-broker",
                   "DB_HOST": "db1", "API": "k", DOTENV_EXPORTED: "DB_HOST,API"}
    # A later load (a reload, a child, the venv re-exec) takes the current .env's values.
    _export_dotenv(("/p/.env", parse_dotenv("DB_HOST=db2\n", "/p/.env")), env)
    assert env == {"REAL": "from the environment", "MQTT_BROKER": "real-broker",
                   "DB_HOST": "db2", DOTENV_EXPORTED: "DB_HOST"}
    _export_dotenv(None, env)
    assert env == {"REAL": "from the environment", "MQTT_BROKER": "real-broker"}
