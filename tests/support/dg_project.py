"""A minimal `dg` project on disk (flat layout), and a tiny Blueprint with its data."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_dg_project(root: Path, module: str = "my_lake") -> Path:
    """pyproject.toml with [tool.dg], `<module>/definitions.py` loading `<module>/defs/`."""
    (root / module / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "{module.replace("_", "-")}"
        version = "0.1.0"

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "{module}"
        """))
    (root / module / "__init__.py").write_text("")
    (root / module / "defs" / "__init__.py").write_text("")
    (root / module / "definitions.py").write_text(textwrap.dedent("""\
        from pathlib import Path

        import dagster as dg


        @dg.definitions
        def defs():
            return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
        """))
    return root


#: Context `data_dir` (override it) and a profile `strict` that keeps only amount > 8.
BLUEPRINT = """\
aqueduct: "1.0"
id: orders
name: Orders
context:
  data_dir: nowhere
  min_amount: 0
context_profiles:
  strict: {min_amount: 8}
modules:
  - id: raw_orders
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/orders.csv", header: true, infer_schema: true}
  - id: clean_orders
    type: Channel
    config: {op: sql, query: "SELECT * FROM raw_orders WHERE amount > ${ctx.min_amount}"}
  - id: orders_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/orders_clean", mode: overwrite}
edges:
  - {from: raw_orders, to: clean_orders}
  - {from: clean_orders, to: orders_out}
"""


def write_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.csv").write_text("order_id,amount\n1,10.5\n2,-1\n3,7\n")
    return folder
