#!/usr/bin/env bash
# Installs the Autobahn|Testsuite into DIR (once; later runs find DIR/.ready and return at once)
# and prints the path of DIR/bin/python, a Python 2.7 that imports the suite.
#
# usage: scripts/autobahn/install.sh DIR
#
# Where the Python 2.7 comes from, first that works:
#   1. $AUTOBAHN_PYTHON2, if set;
#   2. a python2.7 on PATH or under ~/.pyenv/versions/2.7*;
#   3. Debian 11 (bullseye) packages, fetched with apt-get into a private state directory and
#      unpacked under DIR with dpkg -x: nothing is installed into the system. Debian 12 has no
#      Python 2, bullseye does. The mirror is the one this machine's apt sources name
#      (override with AUTOBAHN_DEBIAN_MIRROR).
# The suite and its dependencies (requirements-py27.txt, pinned) come from PyPI, with pip
# 20.3.4, the last pip that runs on Python 2.7 (its wheel is fetched by the host's python3).
#
# exit 0: installed (path printed); 1: the install failed (the reason on stderr).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: install.sh DIR}
[ -e "$dir/.ready" ] && { echo "$dir/bin/python"; exit 0; }

say() { echo "autobahn install: $*" >&2; }
fail() { say "$*"; [ -s "$log" ] && tail -25 "$log" >&2; exit 1; }

tmp="$dir.partial.$$"
rm -rf "$dir" "$dir".partial.*
mkdir -p "$tmp/bin" "$tmp/wheels"
log="$tmp/install.log"
: >"$log"
t0=$SECONDS

works() { "$1" -c 'import ssl, zlib, ctypes, hashlib, json' >/dev/null 2>&1; }

# --- 1. a Python 2.7 -------------------------------------------------------------------
py2=
for cand in "${AUTOBAHN_PYTHON2:-}" "$(command -v python2.7 2>/dev/null || true)" "$HOME"/.pyenv/versions/2.7*/bin/python2.7; do
    [ -n "$cand" ] && [ -x "$cand" ] && works "$cand" && { py2=$cand; break; }
done
libdir=
pyhome=
if [ -n "$py2" ]; then
    say "using the Python 2.7 at $py2"
    include=$("$py2" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
else
    mirror=${AUTOBAHN_DEBIAN_MIRROR:-}
    if [ -z "$mirror" ]; then
        mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
        [ -n "$mirror" ] || mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | sed -E 's/\[[^]]*\] *//' | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
        mirror=${mirror%/}
        mirror=${mirror%/debian}
    fi
    [ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt (set AUTOBAHN_DEBIAN_MIRROR, or AUTOBAHN_PYTHON2 to a python2.7)"
    command -v apt-get >/dev/null && command -v dpkg >/dev/null || fail "no python2.7 found and no apt-get/dpkg to fetch one (set AUTOBAHN_PYTHON2)"
    say "fetching CPython 2.7 from Debian bullseye at $mirror (one-off)"
    apt="$tmp/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/prefs" "$tmp/debs" "$tmp/py27"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    printf 'deb [signed-by=%s] %s/debian bullseye main\ndeb [signed-by=%s] %s/debian-security bullseye-security main\n' \
        "$keyring" "$mirror" "$keyring" "$mirror" >"$apt/sources.list"
    aptargs=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=$apt/parts"
        -o "Dir::Etc::preferencesparts=$apt/prefs" -o "Dir::State::Lists=$apt/lists"
        -o "Dir::Cache=$apt/cache" -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1" -o "Acquire::Retries=3")
    apt-get "${aptargs[@]}" update >>"$log" 2>&1 ||
        fail "apt-get update for Debian bullseye failed at $mirror (set AUTOBAHN_DEBIAN_MIRROR to a mirror that carries bullseye, or AUTOBAHN_PYTHON2)"
    debs="python2.7-minimal libpython2.7-minimal libpython2.7-stdlib python2.7 libpython2.7-dev libssl1.1 libffi7"
    # shellcheck disable=SC2086
    (cd "$tmp/debs" && apt-get "${aptargs[@]}" download $debs) >>"$log" 2>&1 || fail "downloading the Python 2.7 packages failed"
    for d in "$tmp"/debs/*.deb; do dpkg -x "$d" "$tmp/py27"; done
    rm -rf "$apt" "$tmp/debs" "$tmp/py27/usr/share/doc" "$tmp/py27/usr/share/man" "$tmp/py27/usr/lib/python2.7/test"
    libdir=$(dirname "$(ls "$tmp"/py27/usr/lib/*-linux-gnu/libssl.so.1.1)")
    libdir=${libdir#"$tmp/"}
    pyhome=py27/usr
    # (Debian's pyconfig.h includes the multiarch one under usr/include)
    include="$tmp/py27/usr/include/python2.7 -I$tmp/py27/usr/include"
    py2="$tmp/py27/usr/bin/python2.7"
fi

# The launcher: the interpreter, its libraries (Debian path), and the suite's site dir (a real
# site dir, so the zope namespace .pth files are read). Paths are relative to the launcher, so
# the finished directory can be moved into place.
mkdir -p "$tmp/site" "$tmp/custom"
cat >"$tmp/custom/sitecustomize.py" <<'EOF'
import os, site
site.addsitedir(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "site"))
EOF
{
    echo '#!/bin/sh'
    echo 'd=$(cd "$(dirname "$0")/.." && pwd)'
    if [ -n "$pyhome" ]; then
        echo "export LD_LIBRARY_PATH=\"\$d/$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\" PYTHONHOME=\"\$d/$pyhome\""
        echo 'exec env PYTHONPATH="$d/custom${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}" "$d/py27/usr/bin/python2.7" "$@"'
    else
        echo "exec env -u PYTHONHOME PYTHONPATH=\"\$d/custom\${EXTRA_PYTHONPATH:+:\$EXTRA_PYTHONPATH}\" PYENV_VERSION=2.7 \"$py2\" \"\$@\""
    fi
} >"$tmp/bin/python"
chmod +x "$tmp/bin/python"
works "$tmp/bin/python" || fail "the Python 2.7 does not run (missing system libraries?)"

# --- 2. pip for Python 2.7 ------------------------------------------------------------------
host=$(command -v python3 || true)
[ -n "$host" ] || fail "need python3 with pip on the host to fetch pip for Python 2.7"
"$host" -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: -d "$tmp/wheels" \
    pip==20.3.4 setuptools==44.0.0 wheel==0.37.1 >>"$log" 2>&1 || fail "cannot download pip 20.3.4 from PyPI"
pipwhl=$(ls "$tmp"/wheels/pip-*.whl)
"$tmp/bin/python" "$pipwhl/pip" install -q --disable-pip-version-check --no-index --find-links "$tmp/wheels" \
    --target "$tmp/boot" pip==20.3.4 setuptools==44.0.0 wheel==0.37.1 >>"$log" 2>&1 || fail "cannot bootstrap pip for Python 2.7"

# --- 3. the suite -------------------------------------------------------------------------
pip2() { EXTRA_PYTHONPATH="$tmp/boot" "$tmp/bin/python" -m pip --disable-pip-version-check "$@"; }
say "installing autobahntestsuite and its pinned dependencies from PyPI"
pip2 install --no-warn-script-location --prefer-binary --no-deps --target "$tmp/site" \
    -r "$here/requirements-py27.txt" >>"$log" 2>&1 || fail "pip could not install requirements-py27.txt"
# Optional C accelerator for masking and UTF-8 checks (the 9.* cases run faster with it).
if CFLAGS="-I$include" pip2 install --no-deps --target "$tmp/accel" wsaccel==0.6.6 >>"$log" 2>&1; then
    cp -a "$tmp/accel/." "$tmp/site/"
else
    say "note: wsaccel did not build (no C compiler?); continuing without it"
fi
rm -rf "$tmp/boot" "$tmp/accel" "$tmp/wheels" "$tmp/site/bin"
"$tmp/bin/python" -c 'import autobahntestsuite.wstest, twisted, autobahn' >>"$log" 2>&1 || fail "the installed suite does not import"

mv "$tmp" "$dir"
touch "$dir/.ready"
say "installed in $((SECONDS - t0)) s into $dir ($(du -sh "$dir" | cut -f1))"
echo "$dir/bin/python"
