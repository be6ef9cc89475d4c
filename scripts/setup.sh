#!/usr/bin/env bash
# Create .venv and install gem-synth into it (editable), with the extras named as arguments
# (e.g. `scripts/setup.sh test`). Needs only python3.11 and a C compiler (llama-cpp-python
# is compiled from source, about 4 minutes on 2 cores the first time; pip caches the wheel).
#
# llama.cpp is built for generic AVX2 CPUs rather than `-march=native`: on Xeons with AMX
# the native build crashes in batched prompt decoding inside some virtual machines.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
extras=$(IFS=,; echo "$*")
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
# The test suite checks `gem-synth view` in a real headless browser: Chromium and its driver from
# Debian's packages (a browser build of its own cannot be downloaded here). Installed when missing
# and we may (root); without them that one test says why it cannot run.
if [[ " $* " == *" test "* ]] && ! command -v chromedriver >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
        || echo "setup: could not install chromium (the browser test will be skipped)" >&2
fi
