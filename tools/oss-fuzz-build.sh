#!/usr/bin/env bash
# Build the ClusterFuzzLite/OSS-Fuzz fuzz targets here, as their build does:
# one standalone executable per layer (PyInstaller one-file, like
# compile_python_fuzzer), plus <name>_seed_corpus.zip and <name>.dict, into OUT.
#   OUT=build/oss-fuzz bash tools/oss-fuzz-build.sh [os phys hw virt]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(realpath -m "${OUT:-build/oss-fuzz}")
WORK=$(realpath -m "${WORK:-build/oss-fuzz-work}")
mkdir -p "$OUT" "$WORK"
# Like their build: a regular (not editable) install of the project, then PyInstaller.
python3 -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
"$PY" -m pip install -q --disable-pip-version-check . atheris pyinstaller 2>&1 | grep -v "^WARNING: Location" || true
layers=${*:-os phys hw virt}
for layer in $layers; do
  name=fuzz_$layer
  # from outside the source tree, so that the installed package is bundled, not ./memspec
  (cd "$WORK" && "$PY" -m PyInstaller --log-level=WARN --noconfirm --onefile --distpath "$OUT" \
      --workpath "$WORK/build" --specpath "$WORK" --name "$name" --collect-submodules memspec \
      --collect-data memspec --hidden-import atheris "$ROOT/fuzz/oss/$name.py")
  if [ -d "fuzz/corpus/$layer" ]; then
    $PY - "$layer" "$OUT/${name}_seed_corpus.zip" <<'PYEOF'
import os, sys, zipfile
layer, dest = sys.argv[1], sys.argv[2]
src = os.path.join("fuzz", "corpus", layer)
with zipfile.ZipFile(dest, "w") as z:
    for root, _, files in os.walk(src):
        for f in files:
            z.write(os.path.join(root, f), os.path.relpath(os.path.join(root, f), src))
PYEOF
  fi
  cp "fuzz/dict/$layer.dict" "$OUT/$name.dict"
  echo "built $OUT/$name"
done
