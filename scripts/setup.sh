#!/usr/bin/env bash
# Installs what building and testing ringsock needs on a fresh Debian machine. Safe to run again:
# each step checks first and does nothing when its tool is already there.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain from Debian's packages (rustup is preferred if you have it)"
    apt-get update -qq && apt-get install -y -qq cargo rustc >/dev/null
  fi
fi

for component in rustfmt clippy; do
  if command -v rustup >/dev/null 2>&1 && ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

if ! command -v cc >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
fi

# cmake: the engine's `zlib-ng` feature (tested by scripts/test.sh) builds zlib-ng's C sources
# with it (libz-ng-sys); nothing else needs it.
if ! command -v cmake >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi

# The interop tests' peers: Python websockets in .venv-interop, and Chromium.
bash "$(dirname "$0")/interop-setup.sh"
