"""The JVM's own log lines never carry a failed task's data value to stderr.

Spark's executor logs a failed task's exception (`The value 'X' cannot be cast ...`) from the
JVM, outside the Python Redactor. The session's log configuration turns those loggers off; the
failure still reaches the caller as an exception. Run in a fresh process, whose stderr we read
whole (the JVM writes to the file descriptor it inherited, which pytest cannot capture).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

VALUE = "QZ-55821-VALUE"

SCRIPT = textwrap.dedent(
    """
    import sys
    from aqueduct_dagster.engine.session import create_base_session
    spark = create_base_session(app_name="jvm-log-test")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        # From a file, so the cast runs in a task (a literal would fail while planning).
        spark.read.option("header", "true").csv("in.csv").selectExpr("CAST(v AS INT)").collect()
    except Exception as error:
        print("raised", type(error).__name__, "CAST_INVALID_INPUT" in str(error))
    spark.stop()
    """
)


def test_a_failed_cast_leaves_no_data_value_in_the_jvm_stderr(tmp_path):
    (tmp_path / "in.csv").write_text(f"v\n1\n{VALUE}\n")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=240,
        env={**_env(), "AQUEDUCT_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    assert "raised" in done.stdout and "True" in done.stdout, done.stdout + done.stderr
    assert VALUE not in done.stderr, done.stderr[-3000:]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("SPARK_CONNECT")}
