"""udf_registry on real Spark: Python UDFs beside the Blueprint, factories, clear errors."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.session import run_session
from aqueduct_dagster.engine.udfs import register_udfs

pytestmark = pytest.mark.spark

BLUEPRINT = """
aqueduct: "1.0"
id: udfs
name: UDFs
udf_registry:
  - {{id: shout, module: {module}, entry: {entry}, return_type: string}}
  - {{id: scale, module: {module}, entry: make_scaler, return_type: double, params: {{factor: 2.5}}}}
modules:
  - {{id: src, type: Ingress, config: {{format: csv, path: /in.csv}}}}
"""

LOGIC = """
def shout(text):
    return text.upper() + "!"

def make_scaler(factor):
    return lambda value: value * factor
"""


def _manifest(tmp_path, module: str = "udf_logic_a", entry: str = "shout"):
    (tmp_path / f"{module}.py").write_text(LOGIC)
    text = BLUEPRINT.format(module=module, entry=entry)
    return compile_text(text, source_path=str(tmp_path / "udfs.yml"))


def test_python_udfs_and_factories_are_callable_from_sql(spark, tmp_path):
    session = run_session(spark)
    assert register_udfs(session, _manifest(tmp_path)) == ["shout", "scale"]
    row = session.sql("SELECT shout('hi') AS s, scale(CAST(4 AS DOUBLE)) AS d").first()
    assert (row.s, row.d) == ("HI!", 10.0)


def test_unknown_entry_names_the_udf_and_suggests(spark, tmp_path):
    with pytest.raises(ConditionError) as raised:
        register_udfs(run_session(spark), _manifest(tmp_path, "udf_logic_b", entry="shoutt"))
    assert raised.value.condition == "AQ_UDF_REGISTRATION"
    assert "UDF 'shout'" in str(raised.value) and "did you mean 'shout'" in str(raised.value)


def test_missing_module_says_where_it_is_looked_for(spark, tmp_path):
    manifest = compile_text(BLUEPRINT.format(module="no_such_udf_module", entry="x"),
                            source_path=str(tmp_path / "udfs.yml"))  # fmt: skip
    with pytest.raises(ConditionError) as raised:
        register_udfs(run_session(spark), manifest)
    assert "cannot import module 'no_such_udf_module'" in str(raised.value)
    assert "beside the Blueprint" in raised.value.hint
