#!/usr/bin/env bash
# Create .venv and install the pinned stack (see ../shared/docs/INSTALL-NOTES.md).
#
# mmcv 2.1.0 with ops comes from, in order:
#   1. $PERCEPTION_WHEELHOUSE (default ../shared/wheelhouse when it exists), checked against its SHA256SUMS;
#   2. the wheel cache ~/.cache/perception/wheels (or $PERCEPTION_CACHE/wheels);
#   3. a build from the PyPI sdist (c++17 -> c++20 for torch 2.14 headers), cached in 2. for the next run.
# Idempotent: a stamp records the hash of what was installed; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
MMCV_VERSION=2.1.0
if [ -z "${PERCEPTION_WHEELHOUSE:-}" ] && [ -d "$ROOT/../shared/wheelhouse" ]; then
  PERCEPTION_WHEELHOUSE="$ROOT/../shared/wheelhouse"
fi
CACHE=${PERCEPTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/perception}
WHEEL_CACHE="$CACHE/wheels"
STAMP="$VENV/.perception-installed"
want=$(cat setup.cfg pyproject.toml tools/install.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
   && "$VENV/bin/python" -c "import perception, mmcv.ops, mmseg, mmpretrain, mmdet" 2>/dev/null; then
  echo "[install] $VENV is up to date"
  exit 0
fi

log() { echo "[install] $*"; }
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
pyver=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
arch=$(uname -m)

log "build tools and torch 2.14.1 / torchvision 0.29.1"
"${PIP[@]}" install -q "setuptools>=77.0.3,<81" wheel ninja==1.13.2 psutil torch==2.14.1 torchvision==0.29.1

find_mmcv() {  # $1: folder; prints a matching wheel
  local d=$1 w
  [ -d "$d" ] || return 1
  for w in "$d"/mmcv-${MMCV_VERSION}-${pyver}-${pyver}-linux_${arch}.whl; do
    [ -f "$w" ] || continue
    if [ -f "$d/SHA256SUMS" ]; then
      (cd "$d" && grep " $(basename "$w")\$" SHA256SUMS | sha256sum -c --status -) \
        || { echo "[install] checksum mismatch for $w, ignoring it" >&2; continue; }
    fi
    echo "$w"; return 0
  done
  return 1
}

if "$VENV/bin/python" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  wheel=""
  if [ -n "${PERCEPTION_WHEELHOUSE:-}" ]; then wheel=$(find_mmcv "$PERCEPTION_WHEELHOUSE" || true); fi
  [ -n "$wheel" ] || wheel=$(find_mmcv "$WHEEL_CACHE" || true)
  if [ -z "$wheel" ]; then
    log "no mmcv $MMCV_VERSION wheel for $pyver/$arch: building it from the sdist (about 15 minutes on 2 cores)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$build" "mmcv==$MMCV_VERSION"
    tar -xzf "$build"/mmcv-${MMCV_VERSION}.tar.gz -C "$build"
    sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-${MMCV_VERSION}/setup.py"
    mkdir -p "$WHEEL_CACHE"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" wheel --no-deps --no-build-isolation \
      -w "$build/out" "$build/mmcv-${MMCV_VERSION}"
    built=$(ls "$build"/out/mmcv-${MMCV_VERSION}-*.whl)
    mv "$built" "$WHEEL_CACHE/.tmp-$(basename "$built")"
    mv "$WHEEL_CACHE/.tmp-$(basename "$built")" "$WHEEL_CACHE/$(basename "$built")"   # atomic
    (cd "$WHEEL_CACHE" && sha256sum "$(basename "$built")" >> SHA256SUMS)
    wheel="$WHEEL_CACHE/$(basename "$built")"
    log "cached $wheel"
  fi
  log "mmcv from $wheel"
  "${PIP[@]}" install -q --no-deps "$wheel"
fi

log "perception (editable) and the pinned OpenMMLab stack"
"${PIP[@]}" install -q --no-build-isolation -e ".[dev]"
# mmcv/mmengine pull opencv-python, which needs libGL: use the headless build instead.
"${PIP[@]}" uninstall -q -y opencv-python 2>/dev/null || true
"${PIP[@]}" install -q --no-deps --force-reinstall opencv-python-headless==5.0.0.93
# The models as the tools import them: register_all_modules() first makes a current transformers work
# for the mmpretrain models that mmseg.models imports through mmdet (perception/compat.py).
"$VENV/bin/python" -c "import perception, mmcv.ops, mmdet, cv2; perception.register_all_modules(); import mmseg.models, mmpretrain.models; from mmseg.models.decode_heads import Mask2FormerHead; print('[install] ok: torch', __import__('torch').__version__, 'mmcv', mmcv.__version__, 'mmseg', mmseg.__version__, 'mmdet', mmdet.__version__)"
echo "$want" > "$STAMP"
