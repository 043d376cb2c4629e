#!/usr/bin/env bash
# Installs the independent peers the interop tests run against (actors/tests/it/interop_*.rs):
# Python's `websockets` in a project-local venv (.venv-interop, git-ignored) and Debian's
# Chromium. Safe to run again: each step checks first and does nothing when it is already done.
# The tests fail, rather than skip, when these are missing: CI runs this script first.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-interop
requirements=actors/tests/interop/peers/requirements.txt
# The version the tests expect, read from the one pin in the requirements file.
want=$(sed -n 's/^websockets==//p' "$requirements")

apt_install() {
  # One `apt-get update` per run, and only when something is missing.
  if [ -z "${apt_updated:-}" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3 python3-venv
fi

if ! "$venv/bin/python" -c "import websockets, sys; sys.exit(websockets.__version__ != '$want')" \
    >/dev/null 2>&1; then
  echo "interop-setup: creating $venv with websockets==$want"
  rm -rf "$venv"
  # Debian's python3 needs python3-venv (ensurepip) for `-m venv`.
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "interop-setup: installing chromium from Debian's packages"
  apt_install chromium
fi
