#!/usr/bin/env bash
# install.sh: puts Autobahn|Testsuite's `wstest` in autobahn/.cache/, from the package registries
# alone and without touching the system. Safe to run again: each step checks first.
#
# wstest runs only on Python 2.7, which Debian 12 no longer has. So:
#   1. Python 2.7 from Debian 11 (bullseye) packages, fetched with a private apt configuration
#      (its own sources list, lists and archive folders; the system's apt state is untouched),
#      signed by the bullseye keys that Debian 12's debian-archive-keyring still carries, and
#      unpacked with `dpkg-deb -x`. The mirror is the one this machine's apt sources name.
#   2. A Python 3 venv with virtualenv 20.21.1 (the last release that creates 2.7 environments),
#      then a 2.7 virtualenv with pins that were seen to install and run together, and
#      autobahntestsuite itself. wsaccel (the C masking helper) needs gcc.
#
# Afterwards: autobahn/.cache/wstest (a wrapper setting LD_LIBRARY_PATH) runs wstest.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
CACHE=$HERE/.cache
ROOT=$CACHE/py27root
APT=$CACHE/apt
VENV3=$CACHE/venv3
VENV27=$CACHE/venv27
WSTEST=$CACHE/wstest
mkdir -p "$CACHE"

if [[ -x $WSTEST ]] && "$WSTEST" --help >/dev/null 2>&1; then
    echo "autobahn/install.sh: wstest is already installed ($WSTEST)"
    exit 0
fi

# --- 1. Python 2.7 from bullseye ------------------------------------------------------------
PY27=$ROOT/usr/bin/python2.7
LIBS=$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu
if ! LD_LIBRARY_PATH=$LIBS "$PY27" -c 'import ssl, ctypes, zlib' >/dev/null 2>&1; then
    # The first debian mirror the machine's own apt sources use (deb822 or one-line format).
    uris=$(
        {
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {print $2}'
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk '$1 == "deb" {print ($2 ~ /^\[/) ? $3 : $2}'
        } || true
    )
    mirror=$(grep -v -- '-security' <<<"$uris" | grep -m1 '/debian/*$' || true)
    security=$(grep -m1 -- '-security' <<<"$uris" || true)
    if [[ -z $mirror ]]; then
        echo "autobahn/install.sh: no Debian mirror found in the apt sources" >&2
        exit 1
    fi
    security=${security:-${mirror%/debian*}/debian-security}
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/etc"
    : >"$APT/status"
    cat >"$APT/etc/sources.list" <<EOF
deb [signed-by=$keyring] $mirror bullseye main
deb [signed-by=$keyring] $security bullseye-security main
EOF
    apt_opts=(
        -o "Dir::Etc::SourceList=$APT/etc/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$APT/lists"
        -o "Dir::State::Status=$APT/status"
        -o "Dir::Cache=$APT"
        -o "Dir::Cache::Archives=$APT/archives"
        -o "Debug::NoLocking=1"
        -o "APT::Architecture=amd64"
        -o "APT::Architectures=amd64"
    )
    echo "autobahn/install.sh: fetching Python 2.7 from bullseye ($mirror)"
    apt-get "${apt_opts[@]}" -qq update
    packages=(python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libpython2.7
              libpython2.7-dev python2.7-dev libssl1.1 libffi7)
    (cd "$APT/archives" && apt-get "${apt_opts[@]}" -qq download "${packages[@]}")
    mkdir -p "$ROOT"
    for deb in "$APT"/archives/*.deb; do
        dpkg-deb -x "$deb" "$ROOT"
    done
    LD_LIBRARY_PATH=$LIBS "$PY27" -c 'import ssl, ctypes, zlib; print("python2.7 ok")'
fi

# --- 2. virtualenvs and wstest ----------------------------------------------------------------
if [[ ! -x $VENV3/bin/virtualenv ]]; then
    python3 -m venv "$VENV3"
    "$VENV3/bin/pip" install -q 'virtualenv==20.21.1'
fi
if [[ ! -x $VENV27/bin/python ]]; then
    LD_LIBRARY_PATH=$LIBS "$VENV3/bin/virtualenv" -q -p "$PY27" "$VENV27"
fi
pins=(
    setuptools==44.0.0 attrs==21.4.0 'autobahn[twisted]==0.10.9' Automat==22.10.0 cffi==1.15.1
    constantly==15.1.0 cryptography==3.3.2 enum34==1.1.10 hyperlink==21.0.0 idna==2.10
    incremental==16.10.1 ipaddress==1.0.23 Jinja2==2.11.3 klein==17.10.0 linecache2==1.0.0
    MarkupSafe==1.1.1 pyasn1==0.5.1 pyasn1-modules==0.3.0 pycparser==2.21 PyHamcrest==1.10.1
    pyOpenSSL==19.1.0 service-identity==18.1.0 six==1.16.0 traceback2==1.4.0 Twisted==19.10.0
    txaio==2.1.0 typing==3.10.0.0 ujson==2.0.3 unittest2==1.1.0 Werkzeug==1.0.1
    zope.interface==4.6.0 wsaccel==0.6.6
)
export LD_LIBRARY_PATH=$LIBS
export CFLAGS="-I$ROOT/usr/include/python2.7 -I$ROOT/usr/include"
"$VENV27/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
"$VENV27/bin/pip" install -q --disable-pip-version-check autobahntestsuite==25.10.1 ||
    "$VENV27/bin/pip" install -q --disable-pip-version-check autobahntestsuite==0.8.2

cat >"$WSTEST" <<EOF
#!/usr/bin/env bash
# wstest from autobahn/install.sh: Python 2.7 needs its unpacked libraries.
export LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$VENV27/bin/wstest" "\$@"
EOF
chmod +x "$WSTEST"
"$WSTEST" --help >/dev/null
echo "autobahn/install.sh: wstest installed ($WSTEST)"
