#!/usr/bin/env bash
# deb.sh - build routemq_<version>_all.deb with Debian's own tools, then run lintian.
#
#   scripts/deb.sh            (or `make deb`)  ->  packaging/out/routemq_<version>_all.deb
#
# The working tree (tracked and untracked-but-not-ignored files) is copied to
# packaging/out/src with packaging/debian renamed to debian, so the build never writes into
# the tree. dpkg-buildpackage runs with a plain system PATH: a pyenv python3 first on PATH
# breaks pybuild ("No module named build"). Fails when the conffile is out of date with
# routemq/config_keys.py, when setup.py and debian/changelog disagree on the version, or when
# lintian reports an error or a warning that debian/routemq.lintian-overrides does not cover.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/packaging/out
SYSENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="${HOME:-/root}" LANG=C.UTF-8
        DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-}")

for tool in dpkg-buildpackage dh pybuild lintian; do
  command -v "$tool" >/dev/null || "${SYSENV[@]}" sh -c "command -v $tool" >/dev/null || {
    echo "deb.sh: $tool missing: run scripts/test-setup.sh (debhelper, dh-python, lintian)" >&2
    exit 2; }
done

"${SYSENV[@]}" python3 scripts/conffile.py --check

version=$("${SYSENV[@]}" python3 -c 'import re; print(re.search(r"version=\"([^\"]+)\"", open("setup.py").read()).group(1))')
deb_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "$version" != "$deb_version" ]; then
  echo "deb.sh: setup.py says $version, packaging/debian/changelog says $deb_version" >&2
  exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT/src"
git ls-files -z --cached --others --exclude-standard \
  | grep -zv -e '^packaging/out/' -e '^\.venvs/' -e '^\.ci/' \
  | xargs -0 cp --parents -t "$OUT/src" 2>/dev/null || true
# Deleted-but-tracked files make cp complain; what matters is what exists:
[ -f "$OUT/src/setup.py" ] && [ -d "$OUT/src/packaging/debian" ] || { echo "deb.sh: copy failed" >&2; exit 1; }
mv "$OUT/src/packaging/debian" "$OUT/src/debian"
rm -rf "$OUT/src/packaging"

t0=$(date +%s)
(cd "$OUT/src" && "${SYSENV[@]}" dpkg-buildpackage -us -uc -b) > "$OUT/build.log" 2>&1 || {
  tail -40 "$OUT/build.log"; echo "deb.sh: dpkg-buildpackage failed (log: $OUT/build.log)" >&2; exit 1; }
deb=$OUT/routemq_${version}_all.deb
[ -f "$deb" ] || { echo "deb.sh: $deb was not built" >&2; exit 1; }
echo "deb.sh: built $deb in $(( $(date +%s) - t0 )) s"
dpkg-deb -f "$deb" Depends

"${SYSENV[@]}" lintian --fail-on error,warning --info --display-info "$OUT"/routemq_*.changes
echo "deb.sh: lintian clean"
