"""Build a pure-Python wheel from a tiny source tree (pyproject.toml [project] name and
version, one package directory), with only the standard library: the test machines have no
`wheel` package and the containers no network, and a wheel is a zip with three metadata
files (https://packaging.python.org/en/latest/specifications/binary-distribution-format/).
"""
from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(source: Path, out: Path) -> Path:
    """`source/pyproject.toml` + `source/<name>/**/*.py` -> `out/<name>-<version>-py3-none-
    any.whl`; returns its path."""
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    dist_info = f"{name}-{version}.dist-info"
    files = {str(p.relative_to(source)): p.read_bytes()
             for p in sorted((source / name).rglob("*.py"))}
    files[f"{dist_info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: "
                                      f"{version}\nSummary: {project['description']}\n"
                                      ).encode()
    files[f"{dist_info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: routemq-tests\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = [_record_line(n, data) for n, data in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in files.items():
            zf.writestr(n, data)
    return wheel
