#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: one fuzz target per layer, with its seed
# corpus and dictionary.  tools/oss-fuzz-build.sh runs the same steps outside
# their container (compile_python_fuzzer is replaced by the PyInstaller call it makes).
cd "$SRC/memspec"
pip3 install .
for fuzzer in fuzz/oss/fuzz_*.py; do
  name=$(basename "$fuzzer" .py)
  layer=${name#fuzz_}
  compile_python_fuzzer "$fuzzer" --collect-submodules memspec --collect-data memspec
  if [ -d "fuzz/corpus/$layer" ]; then
    (cd "fuzz/corpus/$layer" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
  fi
  cp "fuzz/dict/$layer.dict" "$OUT/$name.dict"
done
