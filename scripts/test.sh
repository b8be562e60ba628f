#!/usr/bin/env bash
# Install what the tests need and run every test: engine (cargo), lint, Python.
# This is the README's test command and the only thing .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet ".[test]"
cargo fmt --all -- --check
cargo clippy --workspace --release --all-targets -- -D warnings
ruff check python tests benchmarks examples
cargo test --workspace --release
# The installed wheel, not the source tree, is imported (python/ is not on
# sys.path). Notebooks are executed too (nbmake).
python3 -m pytest -q tests
python3 -m pytest -q --nbmake notebooks
