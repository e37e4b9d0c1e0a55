"""The SQL allowlist: hostile SQL is refused with the offending node named; analytics passes."""

from __future__ import annotations

import pytest

from aqueduct_dagster.healing.sql_policy import ALLOWED_FUNCTIONS, REFLECTION_FUNCTIONS, sql_problem

INPUTS = {"orders", "customers"}

#: (SQL, words the refusal must contain)
HOSTILE_QUERIES = [
    # script transforms: start a process
    ("SELECT TRANSFORM(id, amount) USING 'sh -c \"touch /tmp/x\"' AS (a, b) FROM orders", "script transform"),
    ("select transform(id) using 'cat' as (a) from orders", "script transform"),
    ("SeLeCt TrAnSfOrM(id) UsInG '/bin/sh' FROM orders", "script transform"),
    ("SELECT * FROM (SELECT TRANSFORM(id) USING 'id' FROM orders) t", "script transform"),
    ("SELECT TRANS/**/FORM(id) USING 'cat' FROM orders", "does not parse"),
    ("SELECT TRANSFORM(id) ROW FORMAT DELIMITED USING 'cat' FROM orders", "refused|transform|parse"),
    # reflection, any case, backticked, nested
    ("SELECT reflect('java.lang.System', 'getenv', 'HOME') FROM orders", "reflect()"),
    ("SELECT REFLECT('java.lang.Runtime', 'getRuntime') FROM orders", "reflect()"),
    ("SELECT `java_method`('java.lang.System', 'getenv', 'HOME') FROM orders", "java_method()"),
    ("SELECT Try_Reflect('java.lang.System', 'getenv', 'X') FROM orders", "try_reflect()"),
    ("SELECT upper(concat('a', java_method('java.lang.System', 'getenv', 'X'))) FROM orders", "java_method()"),
    ("SELECT id FROM orders WHERE amount > (SELECT max(length(reflect('a', 'b'))) FROM customers)", "reflect()"),
    ("SELECT id FROM orders GROUP BY id HAVING count(*) > length(java_method('a', 'b'))", "java_method()"),
    ("SELECT CASE WHEN id > 0 THEN reflect('a','b') ELSE 'x' END FROM orders", "reflect()"),
    ("SELECT transform(array(1), x -> reflect('a', 'b')) FROM orders", "reflect()"),
    # path-qualified tables, anywhere
    ("SELECT * FROM text.`/etc/hostname`", "path-qualified table text.`/etc/hostname`"),
    ("SELECT * FROM parquet.`/data/other`", "path-qualified"),
    ("SELECT * FROM delta.`s3://bucket/x`", "path-qualified"),
    ("SELECT * FROM `csv`.`/etc/passwd`", "path-qualified"),
    ("SELECT * FROM JSON.`/x.json`", "path-qualified"),
    ("SELECT * FROM binaryFile.`/etc`", "path-qualified"),
    ("SELECT id FROM orders WHERE id IN (SELECT value FROM text.`/etc/hostname`)", "path-qualified"),
    ("SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM orc.`/x` o WHERE o.id = orders.id)", "path-qualified"),
    ("SELECT id FROM orders GROUP BY id HAVING max(id) > (SELECT count(*) FROM text.`/etc/x`)", "path-qualified"),
    ("SELECT CASE WHEN id IN (SELECT value FROM text.`/etc/x`) THEN 1 END FROM orders", "path-qualified"),
    ("SELECT id FROM orders UNION ALL SELECT value FROM text.`/etc/passwd`", "path-qualified"),
    ("SELECT id FROM orders INTERSECT SELECT value FROM text.`/etc/passwd`", "path-qualified"),
    ("SELECT id FROM orders o JOIN text.`/etc/passwd` p ON true", "path-qualified"),
    # CTE shadowing an input name does not make a file an input
    ("WITH orders AS (SELECT * FROM text.`/etc/passwd`) SELECT * FROM orders", "path-qualified"),
    ("WITH x AS (SELECT * FROM secrets) SELECT * FROM x", "table 'secrets'"),
    # tables other than the inputs
    ("SELECT * FROM secrets", "table 'secrets' is not an input"),
    ("SELECT * FROM spark_catalog.default.users", "catalog table spark_catalog.default.users"),
    ("SELECT * FROM orders WHERE id IN (SELECT id FROM payroll)", "table 'payroll'"),
    ("SELECT * FROM orders LATERAL VIEW explode(array((SELECT max(x) FROM payroll))) t AS y", "payroll"),
    ("SELECT * FROM `/etc/passwd`", "is not an input"),
    # table-valued functions that read
    ("SELECT * FROM read_files('/etc')", "read_files()"),
    # commands, DDL, DML, SET, several statements
    ("ADD JAR /tmp/evil.jar", "ADD JAR"),
    ("add   jar /tmp/evil.jar", "ADD"),
    ("SET spark.sql.warehouse.dir=/tmp", "SET|does not parse"),
    ("SET spark.sql.ansi.enabled=false", "SET"),
    ("DROP TABLE orders", "DROP"),
    ("CREATE TEMPORARY FUNCTION f AS 'com.evil.F'", "CREATE"),
    ("CREATE TABLE t USING parquet LOCATION '/tmp/x' AS SELECT * FROM orders", "CREATE"),
    ("INSERT OVERWRITE DIRECTORY '/tmp/out' SELECT * FROM orders", "INSERT"),
    ("INSERT INTO orders SELECT * FROM customers", "INSERT"),
    ("CACHE TABLE c AS SELECT * FROM orders", "only a read-only SELECT"),
    ("SELECT 1 FROM orders; DROP TABLE orders", "exactly one SQL statement"),
    ("SELECT 1 FROM orders; SELECT 2 FROM orders", "exactly one SQL statement"),
    ("SELECT 1 FROM orders -- x\n; ADD JAR /x", "exactly one SQL statement"),
    ("USE secret_db", "only a read-only SELECT"),
    ("LOAD DATA LOCAL INPATH '/etc/passwd' INTO TABLE orders", "only a read-only SELECT"),
    # Hive-style script transforms and other process starters
    ("SELECT MAP(id) USING 'cat' AS (a) FROM orders", "refused|parse"),
    ("SELECT REDUCE id USING 'cat' AS (a) FROM orders", "does not parse"),
    ("FROM orders SELECT TRANSFORM(id) USING 'cat'", "script transform"),
    ("EXECUTE IMMEDIATE 'ADD JAR /x.jar'", "EXECUTE"),
    # names resolved at run time, qualified (catalog) functions
    ("SELECT * FROM IDENTIFIER('text.`/etc/x`')", "identifier()"),
    ("SELECT evil_db.upper(id) FROM orders", "qualified function evil_db.upper()"),
    ("SELECT spark_catalog.default.concat(id) FROM orders", "qualified function"),
    ("SELECT system.builtin.reflect('a', 'b') FROM orders", "reflect()"),
    ("SELECT builtin.java_method('a', 'b') FROM orders", "java_method()"),
    # comments two parsers could read differently; hints carrying calls
    ("SELECT id /* /* */, reflect('a', 'b') AS x */ FROM orders", "nested"),
    ("SELECT /*+ REPARTITION(reflect('a', 'b')) */ id FROM orders", "reflect()"),
    # XML parsers can be made to read files
    ("SELECT xpath_string(payload, '/a') FROM orders", "xpath_string()"),
    ("SELECT from_xml(payload, 'a INT') FROM orders", "from_xml()"),
    # functions off the allowlist
    ("SELECT evil_udf(id) FROM orders", "evil_udf()"),
    ("SELECT assert_true(false) FROM orders", "assert_true()"),
    ("SELECT raise_error('x') FROM orders", "raise_error()"),
]

HOSTILE_EXPRESSIONS = [
    ("reflect('java.lang.System', 'getenv', 'HOME') IS NOT NULL", "reflect()"),
    ("amount > 0 AND `JAVA_METHOD`('a', 'b') = 'x'", "java_method()"),
    ("id IN (SELECT 1 FROM text.`/etc/hostname`)", "path-qualified"),
    ("1) FROM text.`/etc/x` WHERE (1", "not a query fragment"),
    ("1; ADD JAR /x", "does not parse|not a query fragment|exactly one"),
    ("amount > 0) UNION SELECT value FROM text.`/etc/x` WHERE (1", "not a query fragment|path-qualified"),
    ("amount > 0 /* ) */ OR reflect('a','b') IS NULL", "reflect()"),
    ("(SELECT max(id) FROM payroll) > 0", "payroll"),
]


def check(problem: str | None, expected: str) -> None:
    assert problem is not None, "hostile SQL passed"
    assert any(word.lower() in problem.lower() for word in expected.split("|")), problem


@pytest.mark.parametrize(("sql", "expected"), HOSTILE_QUERIES, ids=[q[:50] for q, _ in HOSTILE_QUERIES])
def test_hostile_queries_are_refused(sql, expected):
    check(sql_problem(sql, kind="query", tables=INPUTS), expected)


@pytest.mark.parametrize(("sql", "expected"), HOSTILE_EXPRESSIONS, ids=[q[:50] for q, _ in HOSTILE_EXPRESSIONS])
def test_hostile_expressions_are_refused(sql, expected):
    check(sql_problem(sql, kind="expression", tables={"orders"}), expected)


ORDINARY = [
    "SELECT id, amount FROM orders",
    "SELECT o.id, c.name FROM orders o JOIN customers c ON o.cid = c.id WHERE o.amount > 0",
    "WITH t AS (SELECT id, sum(amount) AS s FROM orders GROUP BY id) SELECT * FROM t WHERE s > 10",
    "SELECT id, row_number() OVER (PARTITION BY cid ORDER BY ts DESC) AS rn, lag(amount) OVER (ORDER BY ts) FROM orders",
    "SELECT CAST(amount AS DECIMAL(10, 2)), try_cast(x AS INT), coalesce(a, b, 0), nvl(a, 1) FROM orders",
    "SELECT date_format(ts, 'yyyy-MM'), to_date(s), date_add(ts, 1), datediff(a, b), year(ts), "
    "date_trunc('month', ts), current_date(), months_between(a, b), unix_timestamp(ts) FROM orders",
    "SELECT upper(name), lower(name), trim(name), regexp_replace(name, '[^a-z]', ''), split(name, ','), "
    "concat_ws('-', a, b), substring(name, 1, 3), lpad(id, 5, '0'), initcap(name), length(name) FROM orders",
    "SELECT round(amount, 2), abs(x), floor(x), ceil(x), pow(x, 2), sqrt(x), greatest(a, b), least(a, b) FROM orders",
    "SELECT count(*), count(DISTINCT id), avg(x), percentile_approx(x, 0.5), collect_list(x), max_by(a, b), "
    "approx_count_distinct(id), stddev(x) FROM orders GROUP BY cid HAVING count(*) > 1",
    "SELECT from_json(payload, 'a INT'), get_json_object(payload, '$.a'), to_json(named_struct('a', 1)) FROM orders",
    "SELECT transform(arr, x -> x + 1), filter(arr, x -> x > 0), array_contains(arr, 1), element_at(m, 'k'), "
    "size(arr), map_keys(m), explode(arr) FROM orders",
    "SELECT id, e FROM orders LATERAL VIEW explode(arr) t AS e",
    "SELECT id FROM orders UNION ALL SELECT id FROM customers",
    "SELECT /*+ BROADCAST(customers) */ o.id FROM orders o JOIN customers ON o.cid = customers.id",
    "SELECT CASE WHEN amount > 100 THEN 'big' WHEN amount IS NULL THEN 'none' ELSE 'small' END AS size FROM orders",
    "SELECT id FROM orders WHERE id IN (SELECT id FROM customers WHERE active)",
    "SELECT id, md5(name), sha2(name, 256), hash(id) FROM orders",
    "SELECT try_divide(a, b), try_add(a, b), if(a > b, a, b), nullif(a, 0) FROM orders",
    "SELECT /*+ REPARTITION(8) */ id FROM orders",
    "SELECT /*+ COALESCE(2) */ builtin.upper(name), system.builtin.lower(name) FROM orders",
    "SELECT id /* a comment */ FROM orders -- and another",
]


@pytest.mark.parametrize("sql", ORDINARY, ids=[q[:50] for q in ORDINARY])
def test_ordinary_analytics_passes(sql):
    assert sql_problem(sql, kind="query", tables=INPUTS) is None


def test_registered_udfs_pass_by_name_in_any_case():
    assert sql_problem("SELECT Clean_Name(name) FROM orders", kind="query", tables=INPUTS, udfs={"clean_name"}) is None
    assert "clean_name()" in sql_problem("SELECT clean_name(name) FROM orders", kind="query", tables=INPUTS)


def test_a_udf_cannot_be_named_like_a_reflection_function():
    problem = sql_problem("SELECT reflect('a', 'b') FROM orders", kind="query", tables=INPUTS, udfs={"reflect"})
    assert problem is not None and "reflection" in problem


def test_reflection_is_never_on_the_allowlist():
    assert not (ALLOWED_FUNCTIONS & REFLECTION_FUNCTIONS)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 5000 + "1" + ")" * 5000 + " FROM orders",
        "SELECT id FROM orders WHERE " + " AND ".join(f"a{i} = 1" for i in range(3000)),
        "SELECT " + " + ".join(["1"] * 30000) + " FROM orders",
        "SELECT " + "x" * 200_001 + " FROM orders",
    ],
    ids=["parentheses", "and-chain", "wide-sum", "huge"],
)
def test_bounded_work_gives_a_clean_refusal(sql):
    problem = sql_problem(sql, kind="query", tables=INPUTS)
    assert problem is not None and "too" in problem and ("nested" in problem or "large" in problem)


def test_non_text_is_refused_not_crashed():
    assert sql_problem(None, kind="expression") is not None  # type: ignore[arg-type]
