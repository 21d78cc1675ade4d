"""Configuration: one configargparse parser for every role, values layered from six sources.

Precedence, highest first: command line > environment > the application's .env
(<app_root>/.env, see routemq.dotenv) > conf.d/*.conf (sorted by name, last wins) > main config
file > defaults. The parser declares every key (so `--help` lists flags and
environment variables for all roles); the environment and config-file layers are applied here,
not by configargparse, because its conversion differs between 1.5 and 1.7 (on/off booleans,
inline comments, unsorted globs) and its errors cannot name the file or variable at fault.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import ssl
import stat
import sys
from typing import Any, Callable, Mapping, MutableMapping, NoReturn, Sequence

import configargparse

from routemq.config_keys import KEY_BY_NAME, KEYS, Key, bool_value
from routemq.dotenv import DotenvValue, parse_dotenv
from routemq.errors import EXIT_CONFIG, ConfigError

DEFAULT_CONFIG_FILE = "/etc/routemq/routemq.conf"
DEFAULT_CONFIG_DIR = "/etc/routemq/conf.d"
CONFIG_FILE_ENV = "ROUTEMQ_CONFIG"
CONFIG_DIR_ENV = "ROUTEMQ_CONFIG_DIR"
CREDENTIAL_NAME = "mqtt_password"  # systemd LoadCredential=mqtt_password:/path
REDACTED = "********"
_ABSOLUTE = ("app_root", "runtime_dir")  # made absolute against the cwd at load time
DOTENV = ".env"  # in the application root, as RouteMQ projects have it
# Names the .env cannot set: they decide which files (the .env included) are read.
_NOT_IN_DOTENV = (CONFIG_FILE_ENV, CONFIG_DIR_ENV, KEY_BY_NAME["app_root"].env_var)
# The application's own .env names (DB_HOST, ...) this process exported for it, so a later
# load (a reload, a child, the venv re-exec) replaces them instead of taking them as real.
DOTENV_EXPORTED = "ROUTEMQ_DOTENV_EXPORTED"
Dotenv = tuple[str, Mapping[str, DotenvValue]]  # (path, entries)


def exit_on_config_error(err: BaseException) -> NoReturn:
    """Print the one-line error to stderr and exit EXIT_CONFIG (2: the units say
    RestartPreventExitStatus=2)."""
    text = str(err) if isinstance(err, ConfigError) else f"routemq: config error: {err}"
    print(text.replace("\n", " "), file=sys.stderr)
    sys.exit(EXIT_CONFIG)


# -- pure layers ---------------------------------------------------------------------------------

def where(source: str) -> str:
    """'config file /x' -> 'in /x', 'environment X' -> 'in environment X', ... for messages."""
    for prefix in ("config file ", "env file "):
        if source.startswith(prefix):
            return "in " + source[len(prefix):]
    if source.startswith("environment "):
        return "in " + source
    return "on the command line" if source == "command line" else f"({source})"


def _value_error(key: Key, raw: object, source: str, reason: str) -> ConfigError:
    shown = REDACTED if key.secret else json.dumps(raw, ensure_ascii=False)
    return ConfigError(f"{key.name} = {shown} {where(source)}: {reason}",
                       key=key.name, source=source)


def _file_value(text: str) -> str:
    """The value part of `key = value`: quotes keep ' #' and spaces; else ' #...' is a comment."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        if end < 0:
            raise ValueError("unterminated quote")
        rest = text[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise ValueError("text after the closing quote")
        return text[1:end]
    comment = re.search(r"\s#", text)
    return text[:comment.start()].rstrip() if comment else text


def _unknown_key(name: str) -> str:
    """'unknown key (did you mean mqtt_broker?)', for an error line that names where."""
    close = difflib.get_close_matches(name, KEY_BY_NAME, n=1)
    return "unknown key" + (f" (did you mean {close[0]}?)" if close else "")


def settings_environment(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings given to the Python API (Application, WorkerManager) as the environment
    variables load_config reads: every key can be given this way, the password included,
    and none ends up on a command line that `ps` shows. None means "not given"; load_config
    checks the values; an unknown name is a ConfigError.

        >>> settings_environment({"mqtt_port": 8883, "tls": True, "mqtt_password": None})
        {'MQTT_PORT': '8883', 'ROUTEMQ_TLS': 'true'}
    """
    env = {}
    for name, value in settings.items():
        key = KEY_BY_NAME.get(name)
        if key is None:
            raise ConfigError(f"{name}: {_unknown_key(name)}", key=name, source="argument")
        if value is not None:
            env[key.env_var] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def parse_config_text(text: str, path: str) -> dict[str, str]:
    """Parse one config file into {key: raw value}; unknown keys and bad lines are errors."""
    entries: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or (stripped[0] == "[" and stripped[-1] == "]"):
            continue  # blank, comment, or an ignored [section] header
        name, sep, value = stripped.partition("=")
        name = name.strip()
        key = name.lower().replace("-", "_")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ConfigError(f'{path} line {lineno}: expected "key = value"',
                              source=f"config file {path}")
        if key not in KEY_BY_NAME:
            raise ConfigError(f"{name} in {path} line {lineno}: {_unknown_key(key)}",
                              key=name, source=f"config file {path}")
        try:
            entries[key] = _file_value(value)
        except ValueError as exc:
            raise ConfigError(f"{key} in {path} line {lineno}: {exc}",
                              key=key, source=f"config file {path}") from None
    return entries


def _pick(key: Key, cli: Mapping[str, str], environ: Mapping[str, str],
          files: Sequence[tuple[str, Mapping[str, str]]],
          dotenv: Dotenv | None = None) -> tuple[str | None, str]:
    if key.cli and key.name in cli:
        return cli[key.name], "command line"
    if key.env_var in environ:
        return environ[key.env_var], f"environment {key.env_var}"
    if dotenv is not None and key.env_var in dotenv[1]:
        value, line = dotenv[1][key.env_var]
        return value, f"env file {dotenv[0]} line {line} ({key.env_var})"
    for path, entries in reversed(files):  # the last file read wins
        if key.name in entries:
            return entries[key.name], f"config file {path}"
    return None, "default"


def resolve(cli: Mapping[str, str], environ: Mapping[str, str],
            files: Sequence[tuple[str, Mapping[str, str]]], *,
            cwd: str, dotenv: Dotenv | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Layer and validate raw strings; return ({key: value}, {key: source}). No I/O."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        raw, source = _pick(key, cli, environ, files, dotenv)
        try:
            value = key.default if raw is None else key.parse(raw)
        except ValueError as exc:
            raise _value_error(key, raw, source, str(exc)) from None
        if key.name in _ABSOLUTE:
            value = os.path.normpath(os.path.join(cwd, value or ""))
        values[key.name], sources[key.name] = value, source
    _check_together(values, sources)
    return values, sources


def _check_together(values: dict[str, Any], sources: dict[str, str]) -> None:
    """Rules that involve two keys; may also set `tls` when a TLS file implies it."""
    if values["min_workers"] > values["max_workers"]:
        raise _value_error(KEY_BY_NAME["min_workers"], str(values["min_workers"]),
                           sources["min_workers"], f"greater than max_workers = "
                           f"{values['max_workers']} {where(sources['max_workers'])}")
    if values["tls_key_file"] and not values["tls_cert_file"]:
        raise _value_error(KEY_BY_NAME["tls_key_file"], values["tls_key_file"],
                           sources["tls_key_file"], "needs tls_cert_file")
    for implier in ("tls_ca_file", "tls_cert_file"):
        # An explicit `tls = false` wins: it is how an operator switches TLS off for a while.
        if values[implier] and sources["tls"] == "default":
            values["tls"], sources["tls"] = True, f"implied by {implier}"


# -- the parser ----------------------------------------------------------------------------------

class _Parser(configargparse.ArgParser):
    """ArgParser whose errors raise ConfigError (one line, exit 2 via exit_on_config_error)."""

    default_config_file: str = DEFAULT_CONFIG_FILE
    default_config_dir: str = DEFAULT_CONFIG_DIR

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"on the command line: {message} (see {self.prog} --help)",
                          source="command line")


def build_parser(add_role_args: Callable[[configargparse.ArgParser], None] | None = None, *,
                 config_file: str | None = None, config_dir: str | None = None,
                 prog: str = "routemq") -> configargparse.ArgParser:
    """The parser every role shares: all keys, --config/--config-dir, then the role's args."""
    # A 35-option usage line buries the role's own arguments; roles may set parser.usage.
    parser = _Parser(prog=prog, usage="%(prog)s [options]", allow_abbrev=False,
                     description="RouteMQ for systemd.",
                     epilog="Precedence: command line > environment > <app_root>/.env > "
                     "conf.d/*.conf (sorted) > main config file > defaults. Config files hold "
                     "`key = value` lines, the .env `NAME=VALUE` lines. "
                     "The password is read from MQTT_PASSWORD, mqtt_password in a config file, "
                     "mqtt_password_file, or the systemd credential mqtt_password.")
    parser.default_config_file = config_file or DEFAULT_CONFIG_FILE
    parser.default_config_dir = config_dir or DEFAULT_CONFIG_DIR
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", dest="config_file", metavar="FILE", default=None,
                       env_var=CONFIG_FILE_ENV,
                       help=f"main config file (default {parser.default_config_file})")
    group.add_argument("--config-dir", dest="config_dir", metavar="DIR", default=None,
                       env_var=CONFIG_DIR_ENV,
                       help=f"drop-in directory (default {parser.default_config_dir})")
    for key in KEYS:
        if not key.cli:
            continue
        shown = {"app_root": "current directory"}.get(key.name, key.default)
        shown = '""' if shown == "" else "unset" if shown is None else shown
        extra: dict[str, Any] = {"metavar": "VALUE"}
        if key.parse is bool_value:  # `--tls` alone means true
            extra = {"metavar": "BOOL", "nargs": "?", "const": "true"}
        group.add_argument(key.flag, dest=key.name, default=None, env_var=key.env_var,
                           help=f"{key.help} (default: {shown})".replace("%", "%%"), **extra)
    if add_role_args is not None:
        add_role_args(parser)
    return parser


_SENSITIVE = re.compile(r"pass|secret|token", re.I)


def _shown_args(args: Sequence[str]) -> str:
    """Unrecognized arguments for an error line, with anything that may be a secret hidden."""
    shown: list[str] = []
    hide_next = False
    for arg in args:
        name, eq, _ = arg.partition("=")
        if hide_next:
            shown.append(REDACTED)
        elif eq and name.startswith("-") and _SENSITIVE.search(name):
            shown.append(f"{name}={REDACTED}")
        else:
            shown.append(arg)
        hide_next = arg.startswith("-") and not eq and bool(_SENSITIVE.search(arg))
    return " ".join(shown)


# -- reading at the edge -------------------------------------------------------------------------

def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError("cannot read: not UTF-8 text") from None


def _config_paths(parser: configargparse.ArgParser, namespace: Any,
                  environ: Mapping[str, str]) -> list[str]:
    """The main file (when it exists or was named), then conf.d/*.conf sorted by name."""
    main = namespace.config_file or environ.get(CONFIG_FILE_ENV) or parser.default_config_file
    named = bool(namespace.config_file or environ.get(CONFIG_FILE_ENV))
    paths = [main] if named or os.path.exists(main) else []  # a named file must exist
    directory = namespace.config_dir or environ.get(CONFIG_DIR_ENV) or parser.default_config_dir
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        names = []  # no drop-ins, as with systemd's own .d directories
    except OSError as exc:
        raise ConfigError(f"config directory {directory}: cannot read: {exc.strerror}") from None
    # Sorted here: configargparse 1.5.3 returns glob results in directory order.
    for name in sorted(n for n in names if n.endswith(".conf") and not n.startswith(".")):
        if os.path.isfile(os.path.join(directory, name)):
            paths.append(os.path.join(directory, name))
    return paths


def _read_config_file(path: str) -> dict[str, str]:
    try:
        text = _read_text(path)
    except ValueError as exc:
        raise ConfigError(f"config file {path}: {exc}", source=f"config file {path}") from None
    return parse_config_text(text, path)


def _read_dotenv(cli: Mapping[str, str], environ: Mapping[str, str],
                 files: Sequence[tuple[str, Mapping[str, str]]], cwd: str) -> Dotenv | None:
    """<app_root>/.env parsed (app_root as the other layers give it), or None if absent."""
    root, _ = _pick(KEY_BY_NAME["app_root"], cli, environ, files)
    path = os.path.join(os.path.normpath(os.path.join(cwd, (root or "").strip())), DOTENV)
    if not os.path.lexists(path):
        return None
    problem = _not_a_file(path)  # a FIFO would hang the start
    try:
        if problem:
            raise ValueError(problem)
        entries = parse_dotenv(_read_text(path), path)
    except ValueError as exc:
        raise ConfigError(f"env file {path}: {exc}", source=f"env file {path}") from None
    for name in _NOT_IN_DOTENV:
        if name in entries:
            raise ConfigError(f"{name} in {path} line {entries[name].line}: cannot be set in "
                              "the application's .env (it says which files are read); set it "
                              "in the environment or on the command line",
                              key=name, source=f"env file {path}")
    return path, entries


def _export_dotenv(dotenv: Dotenv | None, environ: MutableMapping[str, str]) -> None:
    """Put the .env names that are not ours (DB_HOST, API keys, ...) into the environment
    for the application, as RouteMQ's load_dotenv does: never over a real variable. Names
    an earlier load exported (listed in DOTENV_EXPORTED) take their current value or go."""
    for name in environ.pop(DOTENV_EXPORTED, "").split(","):
        environ.pop(name, None)
    ours = {key.env_var for key in KEYS}  # read from the .env by each process, not inherited
    exported = [name for name in (dotenv[1] if dotenv else ())
                if name not in ours and name not in environ]
    for name in exported:
        environ[name] = dotenv[1][name].value  # type: ignore[index]
    if exported:
        environ[DOTENV_EXPORTED] = ",".join(exported)


def _not_a_file(path: str) -> str | None:
    """Why `path` is not a regular file we can open (a FIFO would hang the start), or None."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            return "cannot read: Is a directory"
        if not stat.S_ISREG(mode):
            return "cannot read: not a regular file"
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def _read_secret(path: str) -> str:
    """A password file's first line ends at its line break; ValueError with the reason."""
    problem = _not_a_file(path)
    if problem:
        raise ValueError(problem)
    return _read_text(path).rstrip("\r\n")


def _ssl_reason(exc: ssl.SSLError) -> str:
    # "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found (_ssl.c:4149)"
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(exc.args[1] if len(exc.args) > 1 else exc))


def _no_passphrase() -> str:
    raise ValueError("the key is encrypted (a passphrase cannot be given; decrypt it with "
                     "`openssl pkey -in KEY -out KEY.plain`)")


def _check_tls_files(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """The TLS files must be readable and usable now, not at the first connect inside a
    restarting unit (where an SSLError would be a traceback and exit 1)."""
    def fail(name: str, reason: str) -> NoReturn:
        raise _value_error(KEY_BY_NAME[name], values[name], sources[name], reason)

    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        problem = values[name] and _not_a_file(values[name])
        if problem:
            fail(name, problem)
    if values["tls_ca_file"]:
        try:
            ssl.create_default_context(cafile=values["tls_ca_file"])
        except ssl.SSLError as exc:
            fail("tls_ca_file", f"no PEM CA certificate in it ({_ssl_reason(exc)})")
    if values["tls_cert_file"]:
        name = "tls_key_file" if values["tls_key_file"] else "tls_cert_file"
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                values["tls_cert_file"], values["tls_key_file"], password=_no_passphrase)
        except ValueError as exc:
            fail(name, str(exc))
        except ssl.SSLError as exc:
            fail(name, f"cannot load the certificate and its private key ({_ssl_reason(exc)})")


def _resolve_password(values: Mapping[str, Any], sources: Mapping[str, str],
                      environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(password, where it came from): mqtt_password, the file, the systemd credential."""
    if values["mqtt_password"] is not None:
        return values["mqtt_password"], sources["mqtt_password"]
    if values["mqtt_password_file"]:
        path = values["mqtt_password_file"]
        try:
            return _read_secret(path), f"mqtt_password_file {path}"
        except ValueError as exc:
            raise _value_error(KEY_BY_NAME["mqtt_password_file"], path,
                               sources["mqtt_password_file"], str(exc)) from None
    if environ.get("CREDENTIALS_DIRECTORY"):
        path = os.path.join(environ["CREDENTIALS_DIRECTORY"], CREDENTIAL_NAME)
        if os.path.exists(path):
            try:
                return _read_secret(path), f"systemd credential {path}"
            except ValueError as exc:
                raise ConfigError(f"systemd credential {path}: {exc}",
                                  key="mqtt_password", source="CREDENTIALS_DIRECTORY") from None
    return None, None


def _warnings(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[str]:
    """Legal but risky settings, for the caller to log once logging is set up."""
    found = []
    if values["mqtt_password"] is not None and values["mqtt_password_file"]:
        found.append("both mqtt_password and mqtt_password_file are set; using mqtt_password")
    source = sources["mqtt_password"]
    if values["mqtt_password"] is not None and source.startswith(("config file ",
                                                                  "env file ")):
        path = source.split(" ", 2)[2].split(" line ")[0]
        try:
            world_readable = bool(os.stat(path).st_mode & 0o004)
        except OSError:
            world_readable = False
        if world_readable:
            found.append(f"mqtt_password is in {path}, which every local user can read; "
                         "chmod 640 it, or use mqtt_password_file or a systemd credential")
    return found


# -- the result ----------------------------------------------------------------------------------

class _Secret:
    """Holds a secret so that repr() and vars() of its holder never show it."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(REDACTED) if self.value is not None else "None"


class Config:
    """The effective configuration: one attribute per key (see config_keys.KEYS) and per role
    argument, plus `sources` (key -> where its value came from), `password` (resolved),
    `password_source`, `config_files` (read, in order) and `warnings` (to log at start)."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str], *,
                 role_args: Mapping[str, Any] | None = None, password: str | None = None,
                 password_source: str | None = None, config_files: Sequence[str] = (),
                 warnings: Sequence[str] = (), named_config: tuple[str | None, str | None]
                 = (None, None)) -> None:
        for name, value in values.items():
            if not KEY_BY_NAME[name].secret:
                setattr(self, name, value)
        self._mqtt_password = _Secret(values.get("mqtt_password"))
        self._password = _Secret(password)
        self.role_args = dict(role_args or {})
        for name, value in self.role_args.items():
            setattr(self, name, value)
        self.sources = dict(sources)
        self.password_source = password_source
        self.config_files = list(config_files)
        self.warnings = list(warnings)
        self.named_config = named_config  # --config, --config-dir as given on the command line

    @property
    def mqtt_password(self) -> str | None:
        return self._mqtt_password.value

    @property
    def password(self) -> str | None:
        """mqtt_password, else mqtt_password_file's content, else the systemd credential."""
        return self._password.value

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        """Every key (not the role arguments), secrets as "********" when set and redact."""
        out = {}
        for key in KEYS:
            value = getattr(self, key.name)
            out[key.name] = REDACTED if key.secret and redact and value is not None else value
        return out

    def effective(self, redact: bool = True) -> list[tuple[str, Any, str]]:
        """(key, value, source) rows for `routemq config`."""
        return [(name, value, self.sources[name])
                for name, value in self.as_dict(redact).items()]

    def environment(self) -> dict[str, str]:
        """Environment variables that give a child process (a worker started by `routemq run`)
        what this process got on its command line; the rest it reads as we did."""
        # None here is a value given as "" (unset), which must override the child's layers too.
        given = {key.name: getattr(self, key.name) for key in KEYS
                 if self.sources.get(key.name) == "command line" and not key.secret}
        env = settings_environment({k: "" if v is None else v for k, v in given.items()})
        for var, path in zip((CONFIG_FILE_ENV, CONFIG_DIR_ENV), self.named_config):
            if path:
                env[var] = os.path.abspath(path)
        return env

    def __repr__(self) -> str:
        fields = {**self.as_dict(redact=True), **self.role_args}
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


def _unrecognized(args: Sequence[str], prog: str) -> ConfigError:
    if any(a.partition("=")[0].replace("_", "-") == "--mqtt-password" for a in args):
        return ConfigError("mqtt_password cannot be given on the command line, where `ps` "
                           "shows it: use MQTT_PASSWORD, mqtt_password_file or the systemd "
                           "credential mqtt_password", key="mqtt_password", source="command line")
    return ConfigError(f"on the command line: unrecognized arguments: {_shown_args(args)} "
                       f"(see {prog} --help)", source="command line")


def _role_args(parser: configargparse.ArgParser,
               namespace: Any) -> tuple[dict[str, Any], dict[str, str]]:
    ours = {key.name for key in KEYS} | {"config_file", "config_dir"}
    env = parser.get_source_to_settings_dict().get("environment_variables", {})
    from_env = {action.dest: f"environment {name}" for name, (action, _) in env.items()}
    values, sources = {}, {}
    for dest, value in vars(namespace).items():
        if dest not in ours:
            values[dest] = value
            sources[dest] = from_env.get(dest) or (
                "default" if value == parser.get_default(dest) else "command line")
    return values, sources


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
                add_role_args: Callable[[configargparse.ArgParser], None] | None = None, *,
                config_file: str | None = None, config_dir: str | None = None,
                prog: str = "routemq") -> Config:
    """Parse argv (default sys.argv[1:]), environ (default os.environ) and the config files.

    config_file/config_dir replace the built-in locations; ROUTEMQ_CONFIG/ROUTEMQ_CONFIG_DIR
    and --config/--config-dir override them. Raises ConfigError (one line) on any problem.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    parser = build_parser(add_role_args, config_file=config_file, config_dir=config_dir,
                          prog=prog)
    # configargparse applies only the role arguments' variables; ours are layered by resolve().
    ours = {key.env_var for key in KEYS} | {CONFIG_FILE_ENV, CONFIG_DIR_ENV}
    namespace, unknown = parser.parse_known_args(
        args, env_vars={k: v for k, v in env.items() if k not in ours})
    if unknown:
        raise _unrecognized(unknown, parser.prog)
    cli = {key.name: getattr(namespace, key.name) for key in KEYS
           if key.cli and getattr(namespace, key.name) is not None}
    files = [(path, _read_config_file(path)) for path in _config_paths(parser, namespace, env)]
    # Names exported from an earlier .env are never our keys: no need to tell them apart here.
    dotenv = _read_dotenv(cli, env, files, os.getcwd())
    values, sources = resolve(cli, env, files, cwd=os.getcwd(), dotenv=dotenv)
    _check_tls_files(values, sources)
    password, password_source = _resolve_password(values, sources, env)
    role_args, role_sources = _role_args(parser, namespace)
    if environ is None:  # this process's own environment: the application reads it
        _export_dotenv(dotenv, os.environ)
    return Config(values, {**sources, **role_sources}, role_args=role_args, password=password,
                  password_source=password_source, config_files=[path for path, _ in files],
                  warnings=_warnings(values, sources),
                  named_config=(namespace.config_file, namespace.config_dir))
