#!/usr/bin/env bash
# The main demo on the embedded default: local Spark, SQLite Dagster instance (DAGSTER_HOME
# inside the repo), Delta output. Run through `make demo`, which sets up everything first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export AQUEDUCT_DATA_DIR="${AQUEDUCT_DATA_DIR:-$PWD/data}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
# The demo's own state and patch queue, so it never mixes with yours.
export AQUEDUCT_STATE_DIR="$PWD/.aqueduct/demo"
export AQUEDUCT_PATCHES_DIR="$AQUEDUCT_DATA_DIR/demo/patches"
# Heals edit Blueprints: the demo works on a copy, so blueprints/ stays as shipped.
export AQUEDUCT_BLUEPRINTS_DIR="$AQUEDUCT_DATA_DIR/demo/blueprints"
rm -rf "$AQUEDUCT_STATE_DIR" "$AQUEDUCT_PATCHES_DIR" "$AQUEDUCT_BLUEPRINTS_DIR"
mkdir -p "$AQUEDUCT_BLUEPRINTS_DIR" && cp blueprints/*.yml "$AQUEDUCT_BLUEPRINTS_DIR/"

echo "== 1. generate the demo input"
$PY gallery/generate_data.py --out "$AQUEDUCT_DATA_DIR/demo" --orders 1000

echo "== 2. validate the code location"
.venv/bin/dagster definitions validate -w workspace.yaml 2>&1 | tail -n 2

echo "== 3. run the blueprint job 'orders_daily' through Dagster (local Spark)"
.venv/bin/dagster job execute -m aqueduct_dagster.definitions -j orders_daily 2>&1 \
  | grep -E "RUN_SUCCESS|RUN_FAILURE|STEP_FAILURE|ASSET_CHECK_EVALUATION|ASSET_MATERIALIZATION" \
  | sed -E 's/^.* - (RUN_|STEP_|ASSET_)/\1/' || true

echo "== 4. read the Delta table back with delta-rs (no Spark)"
$PY - <<'PYEOF'
import json, os
import pyarrow  # noqa: F401  (import before deltalake, or delta-rs aborts at exit)
from deltalake import DeltaTable

path = os.path.join(os.environ["AQUEDUCT_DATA_DIR"], "demo", "orders_clean")
table = DeltaTable(path)
rows = table.to_pyarrow_dataset().count_rows()
expected = json.load(open(os.path.join(os.environ["AQUEDUCT_DATA_DIR"], "demo", "expected.json")))
print(f"Delta table {path}: version {table.version()}, {rows} rows (expected {expected['valid_orders']})")
if rows != expected["valid_orders"]:
    raise SystemExit("demo failed: the Delta table does not hold the expected rows")
PYEOF
echo
echo "== 5. break it: the upstream export renames 'amount' to 'order_amount'"
$PY gallery/generate_data.py --out "$AQUEDUCT_DATA_DIR/demo" --orders 1000 --rename amount:order_amount
.venv/bin/dagster job execute -m aqueduct_dagster.definitions -j orders_daily 2>&1 \
  | grep -E "RUN_FAILURE|UNRESOLVED_COLUMN" | head -n 2 | cut -c1-220 || true

echo "== 6. heal the failed run offline (rules, no LLM) and stage the patch for review"
.venv/bin/aqueduct heal --latest-failure orders_daily || true
.venv/bin/aqueduct patch list
PATCH_ID=$(ls "$AQUEDUCT_PATCHES_DIR/pending" | grep '\.json$' | head -n 1 | sed 's/\.json$//')
[ -n "$PATCH_ID" ] || { echo "demo failed: no pending patch"; exit 1; }
.venv/bin/aqueduct patch show "$PATCH_ID"
# `make dev` serves what the demo made (its Blueprint copy, state, patch queue) from this file.
cat > .aqueduct/demo.env <<ENVEOF
export AQUEDUCT_DATA_DIR="$AQUEDUCT_DATA_DIR"
export AQUEDUCT_STATE_DIR="$AQUEDUCT_STATE_DIR"
export AQUEDUCT_PATCHES_DIR="$AQUEDUCT_PATCHES_DIR"
export AQUEDUCT_BLUEPRINTS_DIR="$AQUEDUCT_BLUEPRINTS_DIR"
ENVEOF
echo
echo "Apply it with:   AQUEDUCT_BLUEPRINTS_DIR=$AQUEDUCT_BLUEPRINTS_DIR AQUEDUCT_PATCHES_DIR=$AQUEDUCT_PATCHES_DIR AQUEDUCT_STATE_DIR=$AQUEDUCT_STATE_DIR .venv/bin/aqueduct patch apply $PATCH_ID"
echo "Or in the UI:    make dev   (serves this demo's Blueprints, state and patch queue; open http://127.0.0.1:3000,"
echo "                 open the aqueduct_approve_patch job, pick the partition $PATCH_ID, launch)"
