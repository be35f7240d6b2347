#!/usr/bin/env bash
# CI job: ingest the golden set's documents with the real pipeline, evaluate retrieval and a
# sample of answers, and refuse the change when the gate fails (exit 1) or the job is
# misconfigured (exit 2).
#
#   GOLDEN     BEIR-layout folder: documents/ (or corpus.jsonl), queries.jsonl, qrels/test.tsv
#   BASELINE   report.json of the main branch (optional; without it [max_regression] is skipped)
#   ANSWERS    answers to generate and score (default 20: ~1-2 min with the bundled model)
#
# In-process by default. Set ENCLAVE_URL (and ENCLAVE_API_KEY) to evaluate a running server
# instead; it must have ingested the same documents (corpus ids map from file paths).
set -euo pipefail

GOLDEN="${GOLDEN:-tests/golden}"
BASELINE="${BASELINE:-}"
ANSWERS="${ANSWERS:-20}"
GATE="${GATE:-examples/ci/gate.toml}"
OUT="${OUT:-eval-report}"
DATA_DIR="${DATA_DIR:-.enclave-ci}"

args=(eval "$GOLDEN" --data-dir "$DATA_DIR" --out "$OUT" --answers "$ANSWERS" --seed 0
      --gate "$GATE" --no-progress)
if [[ -n "$BASELINE" && -f "$BASELINE" ]]; then
  args+=(--baseline "$BASELINE")
else
  # first run, no baseline yet: keep the absolute thresholds, drop [max_regression]
  # (the last table of the gate file)
  mkdir -p "$OUT"
  sed '/^\[max_regression\]/,$d' "$GATE" > "$OUT/gate-no-baseline.toml"
  args=("${args[@]/#$GATE/$OUT/gate-no-baseline.toml}")
fi
if [[ -n "${ENCLAVE_URL:-}" ]]; then
  args+=(--url "$ENCLAVE_URL")
fi

set +e
enclave "${args[@]}"
status=$?
set -e
case $status in
  0) echo "eval: gate passed; report in $OUT/report.html" ;;
  1) echo "eval: the change lowers quality below the gate; see $OUT/report.md" >&2 ;;
  *) echo "eval: usage error (exit $status)" >&2 ;;
esac
exit $status
