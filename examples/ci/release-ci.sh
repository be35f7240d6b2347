#!/usr/bin/env bash
# CI/CD for the index itself: ingest the documents into a candidate release, score the
# candidate's own tables against the golden set and the gate, and promote it or stop.
#
#   DOCS       folder(s) to ingest (default examples/docs)
#   GOLDEN     golden set: queries.jsonl + qrels/test.tsv (corpus ids: document path suffixes)
#   GATE       gate.toml (default examples/ci/release-gate.toml)
#   DATA_DIR   the data directory the servers read (default .enclave-ci)
#   ANSWERS    answers the gate generates (default 0: retrieval only; answers need the model)
#   OUT        where the candidate's reports are copied (default release-report)
#
# Exit codes: 0 promoted (or nothing changed), 1 refused (the rails or the gate: the reasons
# are printed and the report is kept), 2 misconfigured (usage error, another writer busy).
# The servers reading DATA_DIR switch to a promoted release within 2 s, without a restart.
set -euo pipefail

DOCS="${DOCS:-examples/docs}"
GOLDEN="${GOLDEN:-examples/ci/golden}"
GATE="${GATE:-examples/ci/release-gate.toml}"
DATA_DIR="${DATA_DIR:-.enclave-ci}"
ANSWERS="${ANSWERS:-0}"
OUT="${OUT:-release-report}"
PY="${PYTHON:-python3}"

# The pipeline decides: ingest writes a candidate and leaves it waiting.
export ENCLAVE_RELEASE__AUTO_PROMOTE=false
export ENCLAVE_RELEASE__GOLDEN_SET="$GOLDEN"
export ENCLAVE_RELEASE__GATE="$GATE"
export ENCLAVE_RELEASE__ANSWERS="$ANSWERS"
mkdir -p "$OUT"

# 1. ingest -> candidate (exit 1 = some files failed: the rails judge whether that matters)
set +e
enclave ingest $DOCS --data-dir "$DATA_DIR" --prune --json > "$OUT/ingest.json"
status=$?
set -e
if [[ $status -ge 2 ]]; then
  echo "ingest: usage error (exit $status)" >&2
  exit 2
fi
candidate=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["release"]["id"] or "")' "$OUT/ingest.json")
if [[ -z "$candidate" ]]; then
  echo "nothing changed: no new release; $(enclave status --data-dir "$DATA_DIR" --json | "$PY" -c 'import json,sys; print("live:", json.load(sys.stdin)["releases"]["live"]["id"])')"
  exit 0
fi
echo "candidate $candidate"

# 2. what it changes against the live release (none yet on a first run)
enclave releases diff live "$candidate" --data-dir "$DATA_DIR" 2>/dev/null || true

# 3. rails + gate on the candidate's own tables, then the atomic switch -- or stop
set +e
enclave releases promote "$candidate" --data-dir "$DATA_DIR"
status=$?
set -e
reports="$DATA_DIR/lancedb/_enclave/reports/$candidate"
if [[ -d "$reports" ]]; then
  cp -r "$reports/." "$OUT/"
fi
case $status in
  0) echo "release $candidate is live; gate report in $OUT/report.html" ;;
  1) echo "release $candidate refused; see $OUT/report.md and \`enclave releases show $candidate\`" >&2 ;;
  *) echo "promote: usage error (exit $status)" >&2 ;;
esac
exit $status
