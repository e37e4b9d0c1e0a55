#!/usr/bin/env bash
# The main demo on the embedded default: local Spark, SQLite Dagster instance (DAGSTER_HOME
# inside the repo), Delta output. Run through `make demo`, which sets up everything first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export AQUEDUCT_DATA_DIR="${AQUEDUCT_DATA_DIR:-$PWD/data}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"

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
echo "Explore it in the UI with: make dev   (then open http://127.0.0.1:3000)"
