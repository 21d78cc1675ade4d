"""Layered configuration, validation and error lines (routemq.config, routemq.config_keys)."""
import doctest
import json
import os

import pytest

from routemq import config as config_module
from routemq.config import (KEYS, REDACTED, ConfigError, build_parser, exit_on_config_error,
                            load_config, parse_config_text)

SECRET = "s3cr3t-pa55"


@pytest.fixture
def etc(tmp_path):
    """A private /etc/routemq: the main file path and an empty conf.d."""
    (tmp_path / "conf.d").mkdir()
    return tmp_path


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def load(etc, argv=(), env=None, **kwargs):
    return load_config(list(argv), env or {}, config_file=str(etc / "routemq.conf"),
                       config_dir=str(etc / "conf.d"), **kwargs)


def error_of(etc, argv=(), env=None, **kwargs):
    with pytest.raises(ConfigError) as info:
        load(etc, argv, env, **kwargs)
    text = str(info.value)
    assert "\n" not in text and text.startswith("routemq: config error: ")
    return text


# --- defaults and precedence ----------------------------------------------------------------

def test_defaults(etc):
    cfg = load(etc)
    assert (cfg.mqtt_broker, cfg.mqtt_port, cfg.mqtt_group_name) == ("", 1883, "routemq")
    assert (cfg.worker_count, cfg.min_workers, cfg.max_workers) == ("auto", 1, 8)
    assert (cfg.log_level, cfg.log_format, cfg.mqtt_protocol) == ("INFO", "auto", "5")
    assert cfg.app_root == os.getcwd() and cfg.runtime_dir == "/run/routemq"
    assert cfg.router_directory == "app.routers" and cfg.client_id_prefix == "routemq"
    assert (cfg.keepalive, cfg.session_expiry, cfg.max_inflight) == (30, 3600, 64)
    assert (cfg.drain_timeout, cfg.handler_timeout, cfg.health_interval) == (20.0, 60.0, 1.0)
    assert (cfg.tls, cfg.tls_insecure, cfg.autoscale) == (False, False, False)
    assert (cfg.tls_ca_file, cfg.tls_cert_file, cfg.tls_key_file) == (None, None, None)
    assert (cfg.max_payload_bytes, cfg.dead_letter_topic, cfg.metrics_textfile_dir) == (
        1048576, "", "")
    assert (cfg.scale_interval, cfg.scale_cooldown, cfg.target_rate_per_worker) == (
        30.0, 60.0, 100.0)
    assert cfg.mqtt_username is None and cfg.password is None and cfg.password_source is None
    assert set(cfg.sources.values()) == {"default"}
    assert list(cfg.as_dict()) == [key.name for key in KEYS]
    json.dumps(cfg.as_dict())  # `routemq config --json` can print it as is
    assert cfg.config_files == [] and cfg.warnings == []


def test_precedence_command_line_env_confd_main_default(etc):
    main = write(etc / "routemq.conf", "mqtt_port = 1001\nmqtt_broker = main.example\n"
                 "keepalive = 40\nlog_level = debug\nmqtt_group_name = from-main\n")
    a = write(etc / "conf.d" / "10-a.conf", "mqtt_port = 1002\nmqtt_group_name = from-a\n")
    b = write(etc / "conf.d" / "20-b.conf", "mqtt_port = 1003\nmqtt_group_name = from-b\n"
              "keepalive = 50\n")
    env = {"MQTT_PORT": "1004", "ROUTEMQ_KEEPALIVE": "60"}
    cfg = load(etc, ["--mqtt-port", "1005"], env)
    assert cfg.config_files == [main, a, b]
    assert (cfg.mqtt_port, cfg.sources["mqtt_port"]) == (1005, "command line")
    assert (cfg.keepalive, cfg.sources["keepalive"]) == (60, "environment ROUTEMQ_KEEPALIVE")
    assert (cfg.mqtt_group_name, cfg.sources["mqtt_group_name"]) == ("from-b",
                                                                     f"config file {b}")
    assert (cfg.mqtt_broker, cfg.sources["mqtt_broker"]) == ("main.example",
                                                             f"config file {main}")
    assert (cfg.log_level, cfg.sources["log_level"]) == ("DEBUG", f"config file {main}")
    assert (cfg.max_workers, cfg.sources["max_workers"]) == (8, "default")
    # Peel the layers off one at a time.
    assert load(etc, [], env).mqtt_port == 1004
    assert load(etc).mqtt_port == 1003
    os.remove(b)
    assert load(etc).mqtt_port == 1002
    os.remove(a)
    assert load(etc).mqtt_port == 1001
    os.remove(main)
    assert load(etc).mqtt_port == 1883


def test_confd_is_read_sorted_whatever_the_directory_order(etc, monkeypatch):
    for name, port in (("30-c.conf", 3), ("10-a.conf", 1), ("20-b.conf", 2)):
        write(etc / "conf.d" / name, f"mqtt_port = {port}\n")
    write(etc / "conf.d" / "99-z.conf.dpkg-old", "bogus\n")  # not *.conf: ignored
    write(etc / "conf.d" / ".99-hidden.conf", "bogus\n")
    (etc / "conf.d" / "50-dir.conf").mkdir()
    real_listdir = os.listdir
    monkeypatch.setattr(config_module.os, "listdir",
                        lambda path: sorted(real_listdir(path), reverse=True))
    cfg = load(etc)
    assert [os.path.basename(p) for p in cfg.config_files] == [
        "10-a.conf", "20-b.conf", "30-c.conf"]
    assert cfg.mqtt_port == 3


def test_config_locations_from_environment_and_command_line(etc, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "d").mkdir()
    main = write(other / "main.conf", "mqtt_port = 2001\n")
    drop = write(other / "d" / "x.conf", "keepalive = 99\n")
    env = {"ROUTEMQ_CONFIG": main, "ROUTEMQ_CONFIG_DIR": str(other / "d")}
    cfg = load(etc, [], env)
    assert cfg.config_files == [main, drop] and cfg.mqtt_port == 2001 and cfg.keepalive == 99
    write(etc / "cli.conf", "mqtt_port = 2002\n")
    cfg = load(etc, ["--config", str(etc / "cli.conf"), "--config-dir", str(etc / "none")], env)
    assert cfg.config_files == [str(etc / "cli.conf")] and cfg.mqtt_port == 2002
    assert cfg.sources["mqtt_port"] == f"config file {etc / 'cli.conf'}"


def test_missing_default_file_is_fine_but_a_named_one_is_an_error(etc):
    assert load(etc).config_files == []
    missing = str(etc / "missing.conf")
    text = error_of(etc, [], {"ROUTEMQ_CONFIG": missing})
    assert text == f"routemq: config error: config file {missing}: cannot read: " \
                   "No such file or directory"
    assert missing in error_of(etc, ["--config", missing])


# --- file format ------------------------------------------------------------------------------

def test_file_format():
    entries = parse_config_text(
        "# comment\n; also a comment\n\n[mqtt]\nmqtt-broker = broker.lan   # inline\n"
        "  MQTT_PORT=1884\nmqtt_password = \"a #b \" # quoted keeps ' #' and spaces\n"
        "dead_letter_topic = dead#letters\nmqtt_username =\n", "/x.conf")
    assert entries == {"mqtt_broker": "broker.lan", "mqtt_port": "1884",
                       "mqtt_password": "a #b ", "dead_letter_topic": "dead#letters",
                       "mqtt_username": ""}


def test_later_line_in_one_file_wins():
    assert parse_config_text("mqtt_port = 1\nmqtt_port = 2\n", "/x")["mqtt_port"] == "2"


def test_unknown_key_names_key_file_line_and_suggestion(etc):
    path = write(etc / "conf.d" / "10-x.conf", "# tuning\nkeepalive = 30\nmqtt_prot = 1884\n")
    assert error_of(etc) == (f"routemq: config error: mqtt_prot in {path} line 3: "
                             "unknown key (did you mean mqtt_port?)")


def test_role_arguments_are_not_config_file_keys(etc):
    path = write(etc / "routemq.conf", "instance = 3\n")
    assert error_of(etc) == f"routemq: config error: instance in {path} line 1: unknown key"


def test_line_without_equals_is_an_error_that_does_not_echo_it(etc):
    path = write(etc / "routemq.conf", f"mqtt_password {SECRET}\n")
    text = error_of(etc)
    assert text == f'routemq: config error: {path} line 1: expected "key = value"'
    assert SECRET not in text


def test_unterminated_quote(etc):
    path = write(etc / "routemq.conf", "mqtt_group_name = \"abc\n")
    assert error_of(etc) == (f"routemq: config error: mqtt_group_name in {path} line 1: "
                             "unterminated quote")


# --- bad values ---------------------------------------------------------------------------------

def test_bad_value_in_file_has_the_documented_line(etc):
    path = write(etc / "conf.d" / "10-x.conf", "mqtt_port = abc\n")
    assert error_of(etc) == f'routemq: config error: mqtt_port = "abc" in {path}: not an integer'


def test_bad_value_in_environment_and_on_command_line(etc):
    assert error_of(etc, [], {"MQTT_PORT": "70000"}) == (
        'routemq: config error: mqtt_port = "70000" in environment MQTT_PORT: '
        "must be between 1 and 65535")
    assert error_of(etc, ["--keepalive", "2"]) == (
        'routemq: config error: keepalive = "2" on the command line: '
        "must be between 5 and 3600")


def test_only_the_winning_value_is_validated(etc):
    write(etc / "routemq.conf", "mqtt_port = abc\n")
    assert load(etc, [], {"MQTT_PORT": "1884"}).mqtt_port == 1884


@pytest.mark.parametrize("key, raw, reason", [
    ("mqtt_port", "0", "must be between 1 and 65535"),
    ("mqtt_port", "", "not an integer"),
    ("mqtt_broker", "mqtt://host", "without a scheme"),
    ("mqtt_group_name", "a/b", "not a valid MQTT share name"),
    ("mqtt_group_name", "a+b", "not a valid MQTT share name"),
    ("mqtt_group_name", "", "not a valid MQTT share name"),
    ("mqtt_broker", "broker.example:1883", "without a port: use mqtt_port"),
    ("mqtt_broker", "[::1]:1883", "without a port: use mqtt_port"),
    ("mqtt_broker", "mqtts://broker.example", "tls = true for TLS"),
    ("mqtt_broker", "user@broker.example", "the user name is mqtt_username"),
    ("mqtt_broker", "broker.example/x", "not a host name or IP address"),
    ("mqtt_broker", "[broker.example]", "brackets are for an IPv6 address only"),
    ("mqtt_broker", "fe80::zz", "not a valid IPv6 address"),
    ("worker_count", "0", 'must be "auto" or an integer between 1 and 64'),
    ("worker_count", "lots", 'must be "auto" or an integer between 1 and 64'),
    ("worker_count", "65", 'must be "auto" or an integer between 1 and 64'),
    ("min_workers", "0", "must be between 1 and 64"),
    ("max_workers", "65", "must be between 1 and 64"),
    ("keepalive", "86400", "must be between 5 and 3600"),
    ("log_level", "verbose", "must be one of CRITICAL, DEBUG, ERROR, INFO, WARNING"),
    ("log_format", "xml", "must be one of auto, json, text"),
    ("router_directory", "app/routers", "not a dotted module path"),
    ("client_id_prefix", "my prefix", "without spaces"),
    ("mqtt_protocol", "4", "must be one of 3.1.1, 5"),
    ("session_expiry", "-1", "must be between 0 and 4294967295"),
    ("tls", "maybe", "not a boolean (use true/false, yes/no, on/off or 1/0)"),
    ("max_inflight", "0", "must be between 1 and 65535"),
    ("drain_timeout", "soon", "not a number"),
    ("drain_timeout", "1e300", "must be a finite number between 0 and 3600"),
    ("handler_timeout", "-1", "must be a finite number between 0 and 86400"),
    ("handler_timeout", "inf", "must be a finite number between 0 and 86400"),
    ("health_interval", "0", "must be a finite number between 0.1 and 60"),
    ("health_interval", "1e-6", "must be a finite number between 0.1 and 60"),
    ("health_interval", "61", "must be a finite number between 0.1 and 60"),
    ("scale_interval", "0.001", "must be a finite number between 1 and 3600"),
    ("scale_cooldown", "1e9", "must be a finite number between 0 and 86400"),
    ("target_rate_per_worker", "nan", "must be a finite number between 0.01 and 1000000"),
    ("target_rate_per_worker", "1e-300", "must be a finite number between 0.01 and 1000000"),
    ("max_payload_bytes", "1.5", "not an integer"),
    ("dead_letter_topic", "dead/+", "not a topic to publish to"),
])
def test_each_bad_value_names_key_source_and_reason(etc, key, raw, reason):
    path = write(etc / "routemq.conf", f'{key} = "{raw}"\n')
    prefix = f"routemq: config error: {key} = {json.dumps(raw)} in {path}: "
    text = error_of(etc)
    assert text.startswith(prefix) and reason in text[len(prefix):]


@pytest.mark.parametrize("raw, host", [
    ("broker.example", "broker.example"), ("10.0.0.7", "10.0.0.7"), ("::1", "::1"),
    ("[::1]", "::1"), ("fe80::1%eth0", "fe80::1%eth0"), ("mqtt_1.local.", "mqtt_1.local."),
    ("", ""),
])
def test_broker_hosts_accepted(etc, raw, host):
    """IPv6 literals keep working, bare or in brackets (the brackets are dropped: the socket
    layer wants the bare address)."""
    assert load(etc, [], {"MQTT_BROKER": raw}).mqtt_broker == host


def test_bounds_are_inclusive(etc):
    cfg = load(etc, ["--health-interval", "0.1", "--keepalive", "3600", "--max-workers", "64",
                     "--scale-interval", "1", "--drain-timeout", "3600"], {"WORKER_COUNT": "64"})
    assert (cfg.health_interval, cfg.keepalive, cfg.max_workers, cfg.worker_count) == (
        0.1, 3600, 64, 64)
    assert (cfg.scale_interval, cfg.drain_timeout) == (1.0, 3600.0)


def test_min_workers_above_max_workers(etc):
    text = error_of(etc, ["--min-workers", "5"], {"MAX_WORKERS": "2"})
    assert text == ('routemq: config error: min_workers = "5" on the command line: greater '
                    "than max_workers = 2 in environment MAX_WORKERS")


# --- value forms ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, value", [
    ("true", True), ("YES", True), ("1", True), ("on", True),
    ("false", False), ("No", False), ("0", False), ("off", False)])
def test_boolean_forms(etc, raw, value):
    assert load(etc, [], {"ROUTEMQ_AUTOSCALE": raw}).autoscale is value
    write(etc / "routemq.conf", f"tls-insecure = {raw}\n")
    assert load(etc).tls_insecure is value


def test_bool_flag_alone_means_true(etc):
    assert load(etc, ["--autoscale"]).autoscale is True
    assert load(etc, ["--autoscale", "off"], {"ROUTEMQ_AUTOSCALE": "on"}).autoscale is False


@pytest.mark.parametrize("raw, value", [("5", "5"), ("v5", "5"), ("3.1.1", "3.1.1"),
                                        ("311", "3.1.1"), ("V311", "3.1.1")])
def test_protocol_spellings(etc, raw, value):
    assert load(etc, ["--mqtt-protocol", raw]).mqtt_protocol == value


def test_typed_values(etc):
    cfg = load(etc, ["--worker-count", "4", "--log-level", "warning", "--drain-timeout", "2.5",
                     "--app-root", "srv/app", "--mqtt-username", "  "],
               {"WORKER_COUNT": "AUTO", "ROUTEMQ_RUNTIME_DIR": "run/x"})
    assert cfg.worker_count == 4 and cfg.log_level == "WARNING" and cfg.drain_timeout == 2.5
    assert cfg.app_root == os.path.join(os.getcwd(), "srv/app")
    assert cfg.runtime_dir == os.path.join(os.getcwd(), "run/x")
    assert cfg.mqtt_username is None  # blank means unset
    assert load(etc, [], {"WORKER_COUNT": "Auto"}).worker_count == "auto"


# --- TLS ----------------------------------------------------------------------------------------

# A self-signed certificate (CN routemq-test, P-256, valid until 2126) and its key, for tests.
CERT = """-----BEGIN CERTIFICATE-----
MIIBhDCCASugAwIBAgIUZz+QlBt2LoLnlwbI8DpsMZ3PClswCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMcm91dGVtcS10ZXN0MCAXDTI2MTIwMTIxMTUxNFoYDzIxMjYx
MTA3MjExNTE0WjAXMRUwEwYDVQQDDAxyb3V0ZW1xLXRlc3QwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAARyZmaaN+8PiDzp9VCLjTj2NXGxFfshr4WeKEzseK/+Jdjd
ey0fsvGM25+xshdJp9VYqaX/b2ST4iWP23x/xESNo1MwUTAdBgNVHQ4EFgQUl37i
LpWfrTKfbikubqH9dbiNz2MwHwYDVR0jBBgwFoAUl37iLpWfrTKfbikubqH9dbiN
z2MwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBQUWLdaZdKo9fX
VQjUemcvhtOaw2Z4wWvUjzoseh7rSAIgMiDvsEFOFYyi/XWdJ6C24B1SPXzFPToM
9R1cW/YTAAs=
-----END CERTIFICATE-----
"""
KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg0NRpmjHHG1i6FyI8
I7S6/QZMrSDKW/JxXa3DqAGIpsyhRANCAARyZmaaN+8PiDzp9VCLjTj2NXGxFfsh
r4WeKEzseK/+Jdjdey0fsvGM25+xshdJp9VYqaX/b2ST4iWP23x/xESN
-----END PRIVATE KEY-----
"""

ENCRYPTED_KEY = """-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjqX3HkiJGe8wICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEELp1mKyuEGvdNgWWcKqjIeQEgZAz
7P5kn6nvNN5HYMcfcqwVRVMEk/5HLOS013iNkvIbQ2O0k+uPpRSZF31q6tjYEMkc
mxZouDefxphuT+VOyFNrkNydRXEa1LxZYSM+Aoiw9gvuk5NpUkVF0JTxZzGz/cdy
ATnLdHLRHAtT10d5oIEBOfL88xPTf2i4VyFaJHsu0ArxbeaI3O+DFBF14UuYXiQ=
-----END ENCRYPTED PRIVATE KEY-----
"""  # KEY under the passphrase "routemq"


def test_tls_implied_by_ca_file_unless_switched_off(etc):
    ca = write(etc / "ca.pem", CERT)
    cfg = load(etc, [], {"ROUTEMQ_TLS_CA_FILE": ca})
    assert cfg.tls is True and cfg.sources["tls"] == "implied by tls_ca_file"
    assert load(etc, ["--tls", "false"], {"ROUTEMQ_TLS_CA_FILE": ca}).tls is False


def test_tls_files_must_be_readable_regular_files(etc):
    missing = str(etc / "nope.pem")
    assert error_of(etc, ["--tls-ca-file", missing]) == (
        f'routemq: config error: tls_ca_file = "{missing}" on the command line: '
        "cannot read: No such file or directory")
    assert "cannot read: Is a directory" in error_of(etc, ["--tls-cert-file", str(etc)])
    fifo = str(etc / "fifo")
    os.mkfifo(fifo)  # opening it would block the start for ever
    assert "cannot read: not a regular file" in error_of(etc, ["--tls-ca-file", fifo])


def test_tls_files_must_hold_what_they_are_for(etc):
    """Garbage in a TLS file is found now, not as an SSLError traceback at the first connect."""
    garbage = write(etc / "garbage.pem", "not a certificate\n")
    text = error_of(etc, ["--tls-ca-file", garbage])
    assert text.startswith(f'routemq: config error: tls_ca_file = "{garbage}" on the command '
                           "line: no PEM CA certificate in it (")
    cert = write(etc / "cert.pem", CERT)
    assert 'tls_key_file = "' in error_of(etc, ["--tls-cert-file", cert,
                                                "--tls-key-file", garbage])
    assert "tls_cert_file" in error_of(etc, ["--tls-cert-file", cert])  # no key anywhere
    both = write(etc / "both.pem", CERT + KEY)  # the key may sit in the certificate file
    assert load(etc, ["--tls-cert-file", both, "--tls-ca-file", cert]).tls is True


def test_tls_encrypted_key_is_refused_not_prompted_for(etc):
    """OpenSSL would ask for the passphrase on the terminal, or fail at the first connect."""
    key = write(etc / "key.pem", ENCRYPTED_KEY)
    text = error_of(etc, ["--tls-cert-file", write(etc / "cert.pem", CERT),
                          "--tls-key-file", key])
    assert text == (f'routemq: config error: tls_key_file = "{key}" on the command line: the '
                    "key is encrypted (a passphrase cannot be given; decrypt it with "
                    "`openssl pkey -in KEY -out KEY.plain`)")


def test_tls_key_needs_cert(etc):
    key = write(etc / "key.pem", KEY)
    assert error_of(etc, ["--tls-key-file", key]) == (
        f'routemq: config error: tls_key_file = "{key}" on the command line: '
        "needs tls_cert_file")
    cert = write(etc / "cert.pem", CERT)
    cfg = load(etc, ["--tls-key-file", key, "--tls-cert-file", cert])
    assert cfg.tls is True and cfg.sources["tls"] == "implied by tls_cert_file"


# --- the password ------------------------------------------------------------------------------

def assert_hidden(cfg):
    assert SECRET not in repr(cfg) and SECRET not in str(vars(cfg))
    assert SECRET not in json.dumps(cfg.as_dict()) and SECRET not in str(cfg.effective())
    assert SECRET not in json.dumps(cfg.sources)


def test_password_from_environment(etc):
    cfg = load(etc, [], {"MQTT_PASSWORD": SECRET})
    assert cfg.password == SECRET and cfg.mqtt_password == SECRET
    assert cfg.password_source == "environment MQTT_PASSWORD"
    assert cfg.as_dict()["mqtt_password"] == REDACTED
    assert cfg.as_dict(redact=False)["mqtt_password"] == SECRET
    assert_hidden(cfg)


def test_password_from_config_file_and_world_readable_warning(etc):
    path = write(etc / "routemq.conf", f"mqtt_password = {SECRET}\n")
    os.chmod(path, 0o600)
    cfg = load(etc)
    assert cfg.password == SECRET and cfg.warnings == []
    assert_hidden(cfg)
    os.chmod(path, 0o644)
    [warning] = load(etc).warnings
    assert path in warning and SECRET not in warning


def test_password_file_with_trailing_newline(etc):
    path = write(etc / "pw", SECRET + "\n")
    cfg = load(etc, ["--mqtt-password-file", path])
    assert cfg.password == SECRET and cfg.mqtt_password is None
    assert cfg.password_source == f"mqtt_password_file {path}"
    assert cfg.as_dict()["mqtt_password_file"] == path
    assert_hidden(cfg)


def test_systemd_credential(etc):
    (etc / "creds").mkdir()
    write(etc / "creds" / "mqtt_password", SECRET + "\n")
    cfg = load(etc, [], {"CREDENTIALS_DIRECTORY": str(etc / "creds")})
    assert cfg.password == SECRET
    assert cfg.password_source == f"systemd credential {etc / 'creds' / 'mqtt_password'}"
    assert_hidden(cfg)
    # No credential file in the directory: no password.
    assert load(etc, [], {"CREDENTIALS_DIRECTORY": str(etc)}).password is None


def test_password_precedence(etc):
    (etc / "creds").mkdir()
    write(etc / "creds" / "mqtt_password", "from-credential")
    pw_file = write(etc / "pw", "from-file")
    env = {"CREDENTIALS_DIRECTORY": str(etc / "creds"), "MQTT_PASSWORD_FILE": pw_file}
    assert load(etc, [], env).password == "from-file"
    cfg = load(etc, [], {**env, "MQTT_PASSWORD": "from-env"})
    assert cfg.password == "from-env" and len(cfg.warnings) == 1


def test_unreadable_password_file_names_the_key(etc):
    missing = str(etc / "nope")
    assert error_of(etc, [], {"MQTT_PASSWORD_FILE": missing}) == (
        f'routemq: config error: mqtt_password_file = "{missing}" in environment '
        "MQTT_PASSWORD_FILE: cannot read: No such file or directory")
    assert "mqtt_password_file" in error_of(etc, [], {"MQTT_PASSWORD_FILE": str(etc)})
    fifo = str(etc / "fifo")
    os.mkfifo(fifo)  # reading it would block the start for ever
    assert error_of(etc, [], {"MQTT_PASSWORD_FILE": fifo}).endswith(
        "cannot read: not a regular file")


def test_password_is_never_a_command_line_flag(etc):
    for argv in (["--mqtt-password", SECRET], [f"--mqtt-password={SECRET}"]):
        text = error_of(etc, argv)
        assert "mqtt_password cannot be given on the command line" in text
        assert SECRET not in text
    assert "--mqtt-password " not in build_parser().format_help()


def test_unrecognized_arguments_are_one_line_without_secrets(etc):
    text = error_of(etc, ["--mqtt-passwd", SECRET, "--bogus=1", f"--token={SECRET}"])
    assert text == ("routemq: config error: on the command line: unrecognized arguments: "
                    f"--mqtt-passwd {REDACTED} --bogus=1 --token={REDACTED} "
                    "(see routemq --help)")


# --- roles, help, exit --------------------------------------------------------------------------

def worker_args(parser):
    parser.add_argument("--instance", type=int, required=True, help="instance number")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--state", default="idle", env_var="ROUTEMQ_TEST_STATE")


def test_role_arguments_land_on_config(etc):
    cfg = load(etc, ["--instance", "3", "--mqtt-port", "1884"], {"ROUTEMQ_TEST_STATE": "busy"},
               add_role_args=worker_args)
    assert (cfg.instance, cfg.json, cfg.state, cfg.mqtt_port) == (3, False, "busy", 1884)
    assert cfg.sources["instance"] == "command line" and cfg.sources["json"] == "default"
    assert cfg.sources["state"] == "environment ROUTEMQ_TEST_STATE"
    assert cfg.role_args == {"instance": 3, "json": False, "state": "busy"}
    assert "instance" not in cfg.as_dict()
    assert load(etc, ["--instance", "1", "--json"], add_role_args=worker_args).json is True


def test_role_argument_errors_are_config_errors(etc):
    assert "--instance" in error_of(etc, [], add_role_args=worker_args)
    assert "invalid int value" in error_of(etc, ["--instance", "x"], add_role_args=worker_args)


def test_help_lists_flags_and_environment_variables():
    text = build_parser(lambda p: p.add_argument("--instance")).format_help()
    for needle in ("--mqtt-broker", "MQTT_BROKER", "MQTT_PORT", "ROUTEMQ_APP_ROOT",
                   "ROUTEMQ_CONFIG", "--instance", "MQTT_PASSWORD"):
        assert needle in text


def test_exit_on_config_error(capsys):
    with pytest.raises(SystemExit) as info:
        exit_on_config_error(ConfigError('mqtt_port = "abc" in /x.conf: not an integer'))
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        'routemq: config error: mqtt_port = "abc" in /x.conf: not an integer\n')


def test_error_detail_is_always_one_line():
    err = ConfigError("config file /odd\nname: cannot read", key="k", source="s")
    assert "\n" not in str(err) and (err.key, err.source) == ("k", "s")


# --- settings given to the Python API, and what a child process gets ------------------------

def test_settings_environment_is_what_load_config_reads(etc):
    from routemq.config import settings_environment
    env = settings_environment({"mqtt_port": 8883, "tls": True, "mqtt_password": SECRET,
                                "mqtt_username": None, "worker_count": "auto"})
    assert env == {"MQTT_PORT": "8883", "ROUTEMQ_TLS": "true", "MQTT_PASSWORD": SECRET,
                   "WORKER_COUNT": "auto"}
    cfg = load(etc, env=env)
    assert (cfg.mqtt_port, cfg.tls, cfg.password, cfg.mqtt_username) == (8883, True, SECRET,
                                                                          None)
    with pytest.raises(ConfigError, match=r"mqtt_passwrd: unknown key \(did you mean "
                                          r"mqtt_password\?\)"):
        settings_environment({"mqtt_passwrd": SECRET})
    assert doctest.testmod(config_module).failed == 0


def test_a_child_gets_the_command_lines_keys_but_never_a_secret(etc):
    """`routemq run` gives its workers what it got on its command line; an empty value
    given there ("unset") overrides the child's other layers too."""
    cfg = load(etc, ["--mqtt-port=8883", "--tls", "--mqtt-username="],
               env={"MQTT_PASSWORD": SECRET, "MQTT_USERNAME": "from-env"})
    child = cfg.environment()
    assert child == {"MQTT_PORT": "8883", "ROUTEMQ_TLS": "true", "MQTT_USERNAME": ""}
    again = load(etc, env={"MQTT_USERNAME": "from-env", **child})
    assert (again.mqtt_port, again.tls, again.mqtt_username) == (8883, True, None)
