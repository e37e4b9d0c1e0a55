"""What SQL a patch may write: an allowlist checked on sqlglot's syntax tree (Spark dialect).

Spark SQL is not only a query language: `SELECT TRANSFORM(...) USING 'sh ...'` starts a
process, `reflect`/`java_method` call any Java method, ``text.`/etc/passwd` `` reads any file,
and `ADD JAR`/`SET`/DDL change the session. A patch comes from an untrusted diagnoser, so its
SQL passes only when every node of its tree is known to be harmless:

* one read-only query (or one expression), nothing else: no commands, DDL, DML, `SET`;
* tables: only the module's declared inputs (edge aliases) and the query's own CTE names;
  a path-qualified (``parquet.`/x` ``) or catalog-qualified table is never an input;
* functions: only the side-effect-free Spark built-ins listed below, plus the Blueprint's
  registered UDF names;
* bounded work: too deep or too large a tree is refused, never a crash.

`sql_problem` answers None (passes) or a message naming the offending node and what passes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

DIALECT = "spark"

#: Limits on the work one SQL value may ask of the checker (and of the parser before it).
MAX_CHARS = 100_000
MAX_DEPTH = 500
MAX_NODES = 20_000

#: Reflection: any Java method, from SQL. Refused whatever the allowlist says.
REFLECTION_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})

#: Formats Spark reads from a path written as a table name: ``format.`path` ``.
_PATH_FORMATS = frozenset(
    {"text", "csv", "json", "parquet", "orc", "avro", "delta", "binaryfile", "jdbc", "xml",
     "hive", "iceberg", "hudi", "file", "libsvm", "image"}
)  # fmt: skip

# Side-effect-free Spark SQL built-ins a patch may call, by group (lower case). Anything not
# listed (reflection, file readers, session/catalog state, `assert_true` with its error
# text, unknown names) is refused; add to a group when an ordinary analytics function is
# missing. XML functions (xpath*, from_xml) are left out on purpose: an XML parser can be
# made to read files through external entities.
_ALLOWED_BY_GROUP: dict[str, str] = {
    "conditional": """
        case if iff ifnull nullif nvl nvl2 coalesce isnull isnotnull isnan nanvl
        greatest least when equal_null zeroifnull nullifzero
    """,
    "cast": """
        cast try_cast to_char to_number try_to_number to_varchar boolean tinyint smallint int
        bigint float double decimal string binary date timestamp typeof
        try_to_binary to_binary
    """,
    "math": """
        abs acos acosh asin asinh atan atan2 atanh bin bround cbrt ceil ceiling conv cos cosh
        cot csc degrees e exp expm1 factorial floor hex hypot ln log log10 log1p log2 mod
        negative pi pmod positive pow power radians rand randn random rint round sec shiftleft
        shiftright shiftrightunsigned sign signum sin sinh sqrt tan tanh unhex width_bucket
        try_add try_subtract try_multiply try_divide try_mod div uniform
        bit_and bit_or bit_xor bit_count bit_get getbit bitwise_not
        add sub mul div_op
    """,
    "string": """
        ascii base64 unbase64 bit_length btrim char chr char_length character_length concat
        concat_ws contains decode encode endswith startswith elt find_in_set format_number
        format_string printf initcap instr lcase lower ucase upper left right len length
        levenshtein locate lpad rpad ltrim rtrim trim overlay position regexp regexp_like
        regexp_count regexp_extract regexp_extract_all regexp_instr regexp_replace
        regexp_substr repeat replace reverse rlike like ilike sentences soundex space split
        split_part substr substring substring_index translate mask md5 sha sha1 sha2 crc32
        hash xxhash64 luhn_check to_json from_json schema_of_json json_tuple json_array_length
        json_object_keys get_json_object uuid collate collation quote
        url_decode url_encode try_url_decode parse_url is_valid_utf8 make_valid_utf8
        validate_utf8 try_validate_utf8 randstr
    """,
    "date": """
        add_months convert_timezone curdate current_date current_timestamp current_timezone
        date_add date_diff date_format date_from_unix_date date_part date_sub date_trunc
        dateadd datediff datepart day dayname dayofmonth dayofweek dayofyear extract
        from_unixtime from_utc_timestamp hour last_day localtimestamp make_date make_dt_interval
        make_interval make_timestamp make_timestamp_ltz make_timestamp_ntz make_ym_interval
        minute month monthname months_between next_day now quarter second session_window
        timestamp_micros timestamp_millis timestamp_seconds timestampadd timestampdiff
        to_date to_timestamp to_timestamp_ltz to_timestamp_ntz to_unix_timestamp
        to_utc_timestamp trunc try_make_interval try_make_timestamp try_make_timestamp_ltz
        try_make_timestamp_ntz try_to_timestamp unix_date unix_micros unix_millis unix_seconds
        unix_timestamp weekday weekofyear window window_time year make_time time_trunc
        try_to_date
    """,
    "aggregate": """
        any any_value approx_count_distinct approx_percentile array_agg avg bool_and bool_or
        collect_list collect_set corr count count_if count_min_sketch covar_pop covar_samp
        every first first_value grouping grouping_id histogram_numeric kurtosis last
        last_value listagg max max_by mean median min min_by mode percentile percentile_approx
        percentile_cont percentile_disc product regr_avgx regr_avgy regr_count regr_intercept
        regr_r2 regr_slope regr_sxx regr_sxy regr_syy skewness some std stddev stddev_pop
        stddev_samp string_agg sum try_avg try_sum var_pop var_samp variance
        hll_sketch_agg hll_union_agg hll_sketch_estimate hll_union bitmap_construct_agg
        bitmap_or_agg bitmap_count bitmap_bit_position bitmap_bucket_number
    """,
    "window": """
        cume_dist dense_rank lag lead nth_value ntile percent_rank rank row_number
    """,
    "collection": """
        aggregate array array_append array_compact array_contains array_distinct array_except
        array_insert array_intersect array_join array_max array_min array_position
        array_prepend array_remove array_repeat array_size array_sort array_union
        arrays_overlap arrays_zip cardinality element_at exists explode explode_outer
        filter flatten forall get inline inline_outer map map_concat map_contains_key
        map_entries map_filter map_from_arrays map_from_entries map_keys map_values
        map_zip_with named_struct posexplode posexplode_outer reduce sequence shuffle size
        slice sort_array str_to_map struct transform transform_keys transform_values
        try_element_at zip_with stack range array_size
    """,
    "json_and_variant": """
        parse_json try_parse_json to_variant_object variant_get try_variant_get
        is_variant_null schema_of_variant schema_of_variant_agg variant_explode
        from_csv to_csv schema_of_csv
    """,
    "misc": """
        monotonically_increasing_id spark_partition_id input_file_name
        input_file_block_length input_file_block_start current_catalog current_database
        current_schema current_user user session_user version nullifzero
        bucket years months days hours
    """,
}

ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    name for group in _ALLOWED_BY_GROUP.values() for name in group.split()
)

#: sqlglot's own names for built-ins it models as typed nodes (its class key, lower case),
#: where that name differs from the Spark one above.
_SQLGLOT_KEYS: frozenset[str] = frozenset(
    """
    tsordsadd tsordstodate tsordstotime tsordsdiff timestrtotime timestrtodate timetostr
    strtotime strtodate strtounix unixtotime unixtostr unixtotimestr datestrtodate
    datetodatestr datetodi ditodate timestamptrunc datetrunc timetrunc dateadd datesub
    datediff timestampadd timestampsub timestampdiff lastday dayofweekiso yearofweek
    yearofweekiso weekofyear currentdate currenttimestamp currenttime currentuser
    currentschema currentcatalog regexplike regexpilike regexpextract regexpextractall
    regexpreplace regexpsplit regexpcount splitpart substringindex stringtoarray
    arraytostring arrayconcat arrayfilter arraysize arraysort arrayany arrayall
    arrayintersect arrayoverlaps arrayuniqueagg arraycontains arraycontainsall arrayslice
    arrayfirst arraylast arrayreverse arraydistinct arrayremove arrayposition arrayjoin
    arrayunionagg arrayconcatagg arrayexcept arrayunion arrayappend arrayprepend
    arrayinsert arraymax arraymin arraycompact arraysum arrayagg explodingthings
    jsonextract jsonextractscalar jsonbextract jsonobject jsonarray jsonformat parsejson
    jsontuple jsonarraylength jsonobjectkeys jsonextractarray jsonarraycontains
    jsonbcontains jsonvalue jsonkeys structextract varmap mapfromentries tomap
    approxdistinct approxquantile approxtopk countif logicaland logicalor anyvalue
    groupconcat arrayagg firstvalue lastvalue nthvalue percentilecont percentiledisc
    rowno rownumber denserank percentrank cumedist stddevpop stddevsamp variancepop
    varpop variancesamp covarpop covarsamp trycast safedivide intdiv bitwiseand
    bitwiseor bitwisexor bitwisenot bitwiseleftshift bitwiserightshift bitwisecount
    nullif ifnull nvl2 coalesce greatest least if case cast tryorcast levenshtein
    initcap lower upper length bitlength trim pad repeat reverse left right substring
    concat concatws strposition stuff translate unhex hex md5 md5digest sha sha2
    sha1digest sha2digest base64 tobase64 frombase64 unbase64 encode decode crc32
    xxhash64 hash farmfingerprint format formatnumber tochar tonumber tostr toarray
    todays todouble tointerval round ceil floor sqrt cbrt exp ln log pow abs sign
    mod div trunc rand randn uuid generateseries generatedateseries explode
    explodeouter posexplode posexplodeouter inline unnest sequence sortarray struct
    array map mapkeys mapvalues mapentries lambda transform filter reduce zipwith
    arrayzip elementat size length extract year month day hour minute second quarter
    week weekday dayofmonth dayofyear dayofweek monthname dayname date time timestamp
    datefromparts timefromparts timestampfromparts makeinterval interval
    unixseconds unixmillis unixmicros unixdate fromunixtime monthsbetween nextday
    addmonths lastdaymonth convert converttimezone atTimeZone attimezone fromtimezone
    sum avg count max min median mode stddev variance corr kurtosis skewness
    quantile percentile first last collectlist collectset argmax argmin maxby minby
    bool_and bool_or every some any columnsexpr stringagg listagg within group
    countdistinct hll sketch bitmap typeof isnan isinf isnull isnotnull isascii
    startswith endswith contains like ilike rlike glob between in not and or
    lpad rpad chr ascii unicode soundex space instr locate position regexp
    sentences split splitpart overlay replace mask luhncheck equalnull
    tsordstodatestr tsordstodatetime timestrtounix monotonicallyincreasingid
    dateformat datestrtodate todate totimestamp totimestampntz totimestampltz
    tryelementat trytoblob trydivide tryadd trysubtract trymultiply trymod trysum tryavg
    tryparsejson trytotimestamp trytonumber trytodate safeadd safesubtract safemultiply
    safedivide safenegate bitwiseandagg bitwiseoragg bitwisexoragg bitwisecountagg
    """.split()
)

#: Spark's query hints (`/*+ REPARTITION(8) */`): names, not functions; their arguments are checked.
_HINTS = frozenset(
    {"broadcast", "broadcastjoin", "mapjoin", "merge", "shuffle_merge", "mergejoin", "shuffle_hash",
     "shuffle_replicate_nl", "repartition", "repartition_by_range", "rebalance", "coalesce"}
)  # fmt: skip

#: Qualifiers that name Spark's own functions (`system.builtin.upper`); any other qualifier
#: names a persistent catalog function, which can be any class.
_BUILTIN_QUALIFIERS = frozenset({"builtin", "system.builtin"})

SqlKind = Literal["query", "expression"]

_DDL_DML: tuple[type[exp.Expression], ...] = tuple(
    cls
    for cls in (
        getattr(exp, name, None)
        for name in (
            "DDL", "DML", "Command", "Set", "SetItem", "Drop", "Create", "Alter", "AlterColumn",
            "Insert", "Update", "Delete", "Merge", "Use", "Describe", "Show", "Cache",
            "Uncache", "LoadData", "Pragma", "Transaction", "Commit", "Rollback", "Refresh",
            "Analyze", "Copy", "TruncateTable", "Grant", "Revoke", "Comment", "Kill",
            "Execute", "Declare", "Into", "QueryTransform", "Export", "Summarize",
        )
    )
    if isinstance(cls, type)
)  # fmt: skip


class _Refused(Exception):
    """The first offending node found (internal: becomes sql_problem's message)."""


def sql_problem(
    sql: str,
    *,
    kind: SqlKind,
    tables: Iterable[str] = (),
    udfs: Iterable[str] = (),
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> str | None:
    """None when `sql` passes the allowlist; else what is wrong, naming the node.

    `kind` "query" is one read-only SELECT (CTEs and set operations allowed); "expression"
    is one value or condition (a filter, a projection, a spillway condition). `tables` are
    the names the SQL may read (the module's input aliases); `udfs` the Blueprint's
    registered UDF names. Never raises for a bad input.
    """
    if not isinstance(sql, str):
        return f"expected SQL text, got {type(sql).__name__}"
    if len(sql) > MAX_CHARS:
        return f"SQL too large: {len(sql)} characters (at most {MAX_CHARS})"
    try:
        tree = _parse(sql, kind)
        _check_tree(tree, {t.lower() for t in tables}, {u.lower() for u in udfs}, max_depth, max_nodes)
        _check_called_names(sql, {u.lower() for u in udfs})
    except _Refused as refusal:
        return str(refusal)
    except RecursionError:
        return f"SQL too deeply nested / too large: {len(sql)} characters"
    except Exception as error:  # noqa: BLE001 - a checker crash is a refusal, never a pass
        return f"SQL cannot be checked ({type(error).__name__}): refused"
    return None


def _parse(sql: str, kind: SqlKind) -> exp.Expression:
    text = sql if kind == "query" else f"SELECT (\n{sql}\n)"
    try:
        _check_comments(text)
        statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
    except SqlglotError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _Refused(f"SQL does not parse as Spark SQL: {_plain(first)}") from None
    if len(statements) != 1:
        raise _Refused(f"expected exactly one SQL statement, found {len(statements)}: "
                       "remove the ';' and everything after it")  # fmt: skip
    tree = statements[0]
    if kind == "query":
        if not isinstance(tree, exp.Query):
            raise _Refused(f"only a read-only SELECT is allowed, found {_node_name(tree)}: "
                           "write one SELECT ... FROM <input>")  # fmt: skip
        return tree
    # An expression parses as the only projection of a bare SELECT; anything else (a FROM,
    # a WHERE, a UNION smuggled in through an unbalanced parenthesis) is not one expression.
    if (
        not isinstance(tree, exp.Select)
        or len(tree.expressions) != 1
        or any(value for key, value in tree.args.items() if key != "expressions")
    ):
        raise _Refused("expected one SQL expression (a value or condition), not a query "
                       "fragment: remove FROM/WHERE/UNION and unbalanced parentheses")  # fmt: skip
    return tree


def _check_comments(text: str) -> None:
    """Refuse nested comments: where two parsers could disagree on where one ends, the
    checker might see a comment where Spark sees code."""
    for token in sqlglot.Dialect.get_or_raise(DIALECT).tokenize(text):
        for comment in token.comments:
            if "/*" in comment or "*/" in comment:
                raise _Refused("nested /* */ comments are not allowed: remove the inner comment")


def _check_tree(tree: exp.Expression, tables: set[str], udfs: set[str], max_depth: int, max_nodes: int) -> None:
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    readable = tables | cte_names
    stack: list[tuple[exp.Expression, int]] = [(tree, 0)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise _Refused(f"SQL too deeply nested / too large: more than {max_nodes} nodes")
        if depth > max_depth:
            raise _Refused(f"SQL too deeply nested / too large: nesting deeper than {max_depth}")
        _check_node(node, readable, udfs)
        for child in _children(node):
            stack.append((child, depth + 1))


def _children(node: exp.Expression) -> list[exp.Expression]:
    found = []
    for value in node.args.values():
        if isinstance(value, exp.Expression):
            found.append(value)
        elif isinstance(value, list):
            found.extend(v for v in value if isinstance(v, exp.Expression))
    return found


def _check_node(node: exp.Expression, readable: set[str], udfs: set[str]) -> None:
    if isinstance(node, exp.QueryTransform):
        raise _Refused("script transform (SELECT TRANSFORM ... USING) runs an external "
                       "process: not allowed; compute the columns with SQL functions")  # fmt: skip
    if isinstance(node, _DDL_DML):
        raise _Refused(f"{_node_name(node)} is not allowed: only a read-only SELECT or "
                       "expression (no commands, DDL, DML, SET, ADD JAR)")  # fmt: skip
    if isinstance(node, exp.Table):
        _check_table(node, readable)
    elif isinstance(node, exp.Func):
        _check_function(node, udfs)
        _check_size(node)


#: Functions whose arguments say how many rows, elements or characters to make: a patch
#: could ask the sandbox (and the run) for billions (`range(1e12)`, `repeat('x', 2e9)`).
_SIZE_FUNCTIONS = frozenset(
    {"range", "sequence", "generateseries", "generatedateseries", "repeat", "array_repeat",
     "arrayrepeat", "space", "lpad", "rpad", "pad", "randstr", "make_interval", "stack"}
)  # fmt: skip
#: The largest count a literal argument of those functions may give.
MAX_GENERATED = 100_000


def _check_size(node: exp.Func) -> None:
    names = {node.key.lower(), str(node.name).lower() if isinstance(node, exp.Anonymous) else ""}
    if not names & _SIZE_FUNCTIONS:
        return
    name = sorted(names & _SIZE_FUNCTIONS)[0]
    for argument in _children(node):
        for inner in argument.walk():
            if isinstance(inner, (exp.Mul, exp.Pow, exp.BitwiseLeftShift)) or (
                isinstance(inner, exp.Anonymous) and str(inner.name).lower() in ("pow", "power", "shiftleft")
            ):
                raise _Refused(f"function {name}() with a computed size ({inner.sql(dialect=DIALECT)[:80]}): "
                               f"give a literal count of at most {MAX_GENERATED:,}")  # fmt: skip
            if isinstance(inner, exp.Literal) and not inner.is_string:
                try:
                    amount = abs(float(inner.this))
                except ValueError:
                    continue
                if amount > MAX_GENERATED:
                    raise _Refused(f"function {name}() asks for {inner.this} rows/elements/characters: "
                                   f"at most {MAX_GENERATED:,}")  # fmt: skip


def _check_table(table: exp.Table, readable: set[str]) -> None:
    if table.find_ancestor(exp.Hint) is not None:
        return  # /*+ BROADCAST(t) */ names an alias, it reads nothing
    if not isinstance(table.this, exp.Identifier):
        return  # a table-valued function (FROM range(10)): its Func node is checked
    qualifier = ".".join(str(part.name) for part in (table.args.get("catalog"), table.args.get("db")) if part)
    name = table.name
    if qualifier:
        if qualifier.lower().split(".")[-1] in _PATH_FORMATS or "/" in name or ":" in name:
            raise _Refused(f"path-qualified table {qualifier}.`{name}` reads a file directly: "
                           f"not allowed; read only this module's inputs ({_listing(readable)})")  # fmt: skip
        if f"{qualifier}.{name}".lower() in readable:
            return  # a catalog table this module already read before the patch
        raise _Refused(f"catalog table {qualifier}.{name} is not an input of this module: read "
                       f"only its inputs ({_listing(readable)})")  # fmt: skip
    if name.lower() not in readable:
        raise _Refused(f"table '{name}' is not an input of this module: read only its inputs "
                       f"({_listing(readable)})")  # fmt: skip


def _check_function(node: exp.Func, udfs: set[str]) -> None:
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        qualifier = parent.this.sql(dialect=DIALECT).replace("`", "").lower()
        if qualifier not in _BUILTIN_QUALIFIERS:
            raise _Refused(f"qualified function {qualifier}.{str(node.name).lower()}() names a catalog "
                           "function, which can run any code: call the built-in unqualified")  # fmt: skip
    if isinstance(node, exp.Anonymous):
        name = str(node.name).lower()
        if name in REFLECTION_FUNCTIONS:
            raise _Refused(f"function {name}() calls Java by reflection: not allowed")
        if isinstance(parent, exp.Hint) and name in _HINTS:
            return  # a hint's name; its arguments are checked as nodes of their own
        if name in ALLOWED_FUNCTIONS or name in udfs:
            return
        raise _Refused(f"function {name}() is not on the allowlist of side-effect-free Spark "
                       f"functions{' or registered UDFs' if udfs else ''}: use a built-in "
                       "(string, math, date, aggregate, window, array/map/struct, json) or "
                       "register a UDF in udf_registry")  # fmt: skip
    names = {node.key.lower(), *(n.lower() for n in type(node).sql_names())}
    if names & REFLECTION_FUNCTIONS:
        raise _Refused(f"function {sorted(names & REFLECTION_FUNCTIONS)[0]}() calls Java by reflection: not allowed")
    if names & ALLOWED_FUNCTIONS or node.key.lower() in _SQLGLOT_KEYS or names & udfs:
        return
    raise _Refused(f"function {type(node).sql_names()[0].lower()}() is not on the allowlist of "
                   "side-effect-free Spark functions")  # fmt: skip


#: Words that stand before "(" as syntax, not as a function call.
_SYNTAX_WORDS = frozenset(
    """
    in exists values over using on and or not where having when then else select from join by
    filter within interval decimal dec numeric varchar char character array map struct
    tablesample lateral case distinct all any some union intersect except is between limit
    offset rows range window pivot unpivot for as cluster partition group order sort
    distribute row cube rollup sets like ilike rlike escape nulls outer with
    """.split()
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_called_names(sql: str, udfs: set[str]) -> None:
    """Every name called as written is an allowed built-in or a registered UDF.

    sqlglot reads some names of other dialects into its typed nodes (`array_sum(...)`,
    `format(...)`); Spark has no such built-in and looks the name up as a session or catalog
    function instead, which can be any class. So the name as written must be allowed, not
    only the node sqlglot made of it.
    """
    tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    for index, token in enumerate(tokens[:-1]):
        if tokens[index + 1].token_type != TokenType.L_PAREN:
            continue
        name = token.text.lower()
        if token.token_type != TokenType.IDENTIFIER and not _WORD.fullmatch(token.text):
            continue  # punctuation, a string, a multi-word keyword (`GROUP BY (`)
        previous = tokens[index - 1].token_type if index else None
        if name in _SYNTAX_WORDS and token.token_type != TokenType.IDENTIFIER:
            continue
        if previous in (TokenType.ALIAS, TokenType.WITH):
            continue  # `AS t(a, b)`, `WITH c(a) AS`: column names, not a call
        if name in ALLOWED_FUNCTIONS or name in udfs or name in REFLECTION_FUNCTIONS:
            continue  # reflection was refused on the tree, with its own message
        raise _Refused(f"function {name}() is not a Spark built-in on the allowlist of side-effect-free "
                       f"functions{' or a registered UDF' if udfs else ''}: Spark would look it up as a "
                       "session or catalog function; use a built-in (string, math, date, aggregate, "
                       "window, array/map/struct, json) or register a UDF in udf_registry")  # fmt: skip


def _node_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return f"command {str(node.this).upper()}"
    return f"{type(node).__name__.upper()} statement" if not isinstance(node, exp.Func) else type(node).__name__


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "none"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def tables_read(sql: str) -> set[str]:
    """Tables (plain or catalog-qualified, lower case) a query reads; path-qualified ones and
    the query's own CTEs left out. Empty when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except (SqlglotError, RecursionError):
        return set()
    if tree is None:
        return set()
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    found = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or table.find_ancestor(exp.Hint) is not None:
            continue
        parts = [str(p.name) for p in (table.args.get("catalog"), table.args.get("db")) if p]
        if parts and (parts[-1].lower() in _PATH_FORMATS or "/" in table.name or ":" in table.name):
            continue
        name = ".".join([*parts, table.name]).lower()
        if name not in ctes:
            found.add(name)
    return found
