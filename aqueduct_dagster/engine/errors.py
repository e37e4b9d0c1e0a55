"""Structured Spark errors: what failed, in Spark's own terms, and whether a retry can help.

`extract_spark_error` turns whatever a module raised (a PySpark exception from a classic or
a Spark Connect session, a raw `Py4JJavaError`, a socket error from a dead gateway, a plain
Python error) into one `SparkErrorInfo` record: condition, SQLSTATE, message parameters, the
Java cause chain. The retry layer keys on its `transient` flag, which is decided once, here.
`FailureRecord` is that record with the module and its input schemas (or an Assert's failed
rules): the one shape a failure has from the step that caught it to the healer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aqueduct_dagster.errors import EngineError, SourceLocation

#: How many links of a cause chain are kept, and how long each may be.
_MAX_CHAIN = 8
_MAX_LINK = 400
_MAX_MESSAGE = 4000

#: Conditions that only say "something below failed": the condition of the cause is the news.
_WRAPPER_CONDITIONS = frozenset({"FAILED_READ_FILE.NO_HINT", "TASK_WRITE_FAILED"})

#: Failures of the machinery, not of the module: worth a retry, never worth a heal.
_TRANSIENT_CLASSES = frozenset(
    {
        "Py4JNetworkError",
        "ConnectionError",
        "ConnectionRefusedError",
        "ConnectionResetError",
        "ConnectionAbortedError",
        "BrokenPipeError",
    }
)
_TRANSIENT_TEXT = re.compile(
    r"connection refused|connection reset|broken pipe|connection timed out"
    r"|error while sending or receiving|answer from java side is empty"
    r"|java gateway|py4j.*(gateway|network)|failed to connect to"
    r"|statuscode\.unavailable"
    r"|executorlostfailure|executor lost|lost executor|executor .* lost"
    r"|fetchfailed|metadatafetchfailed|heartbeat|rpctimeoutexception",
    re.IGNORECASE,
)
#: Memory exhaustion looks like a lost executor from the outside; retrying cannot fix it.
_TERMINAL_TEXT = re.compile(
    r"outofmemoryerror|java heap space|gc overhead limit|exceeding memory limits"
    r"|container killed .*memory|_OOM\b",
    re.IGNORECASE,
)
#: SQLSTATE classes that describe the query or the data, never the cluster.
_TERMINAL_SQLSTATE_CLASSES = frozenset({"21", "22", "23", "38", "42", "0A", "KD", "P0"})


def is_transient(
    *,
    exception_class: str = "",
    condition: str | None = None,
    sqlstate: str | None = None,
    message: str = "",
    cause_chain: Iterable[str] = (),
    java_class: str | None = None,
) -> bool:
    """Whether a retry can succeed: gateway/connection trouble, lost executors, fetch failures.

    Analysis errors, data errors and memory exhaustion are terminal.
    """
    text = "\n".join([exception_class, condition or "", java_class or "", message, *cause_chain])
    if _TERMINAL_TEXT.search(text):
        return False
    if sqlstate and sqlstate[:2] in _TERMINAL_SQLSTATE_CLASSES:
        return False
    if sqlstate and sqlstate[:2] == "08":  # connection exception (JDBC sources, Connect)
        return True
    if exception_class in _TRANSIENT_CLASSES:
        return True
    return bool(_TRANSIENT_TEXT.search(text))


class SparkErrorInfo(BaseModel):
    """One failure in Spark's terms: the facts the healer keys on and the retry layer reads.

    The same type travels from the engine (`extract_spark_error`) through the Dagster event
    log (inside a `FailureRecord`, redacted) into the healer's `FailurePackage`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    exception_class: str = ""
    condition: str | None = None
    sqlstate: str | None = None
    message_parameters: dict[str, str] = Field(default_factory=dict)
    message: str = ""
    java_class: str | None = None
    cause_chain: list[str] = Field(default_factory=list)
    transient: bool = False
    #: Where in the SQL text or DataFrame code the error points (fragment, summary).
    query_context: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("message_parameters", mode="before")
    @classmethod
    def _text_parameters(cls, value: Any) -> dict[str, str]:
        return {str(k): str(v) for k, v in (value or {}).items()}

    @field_validator("cause_chain", mode="before")
    @classmethod
    def _text_chain(cls, value: Any) -> list[str]:
        return [str(link) for link in value or []]

    @field_validator("exception_class", "message", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value or "")

    @field_validator("query_context", mode="before")
    @classmethod
    def _contexts(cls, value: Any) -> list[dict[str, Any]]:
        return [dict(item) for item in value or []]

    def signature(self, *, blueprint_id: str | None = None, module_id: str | None = None) -> str:
        """Stable across runs of the same failure: the condition (or class) and parameter names.

        Parameter values are data (a bad cast input, a path with a date in it), so they are
        left out. For Python UDF failures the Python exception class is kept, since
        PYTHON_EXCEPTION alone says nothing. Scoped to a Blueprint and a module (what the
        healer dedupes and rate-limits on) it is `head:module:digest`.
        """
        head = self.condition or self.java_class or self.exception_class or "unknown"
        if self.condition == "PYTHON_EXCEPTION":
            python_class = _python_exception_class(self.message_parameters.get("traceback", ""))
            if python_class:
                head = f"{head}:{python_class}"
        parameters = ",".join(sorted(self.message_parameters))
        if blueprint_id is None and module_id is None:
            return f"{head}[{parameters}]"
        scope = f"{blueprint_id or ''}|{module_id or ''}|{head}|{parameters}"
        return f"{head}:{module_id or ''}:{hashlib.sha256(scope.encode()).hexdigest()[:12]}"

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["signature"] = self.signature()
        return data

    def redacted(self, redactor: Any) -> SparkErrorInfo:
        """These facts with secrets and data values removed (`redactor`: healing.redaction.Redactor).

        The facts decide what is data: a data-class error (SQLSTATE 22, 23, ...) loses its
        data values in every field, an analysis error keeps the SQL it quotes.
        """
        return SparkErrorInfo.model_validate(redactor.error(self.to_dict()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparkErrorInfo:
        """The inverse of `to_dict` (extra keys, such as `signature`, are ignored)."""
        return cls.model_validate(dict(data))


FailureTrigger = Literal["run_failure", "assert"]


class FailureRecord(BaseModel):
    """One failure as the event log keeps it, built once where it was caught.

    A failed step (or a failed check's aggregate) records the module it surfaced in, the
    Spark facts and the schemas of its inputs; a `trigger_agent` Assert records its failed
    rules. Written by the Dagster step (`to_json`, after `redacted`), read back by the heal
    job (`from_json`) as this same type.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    module_id: str
    error: SparkErrorInfo
    trigger: FailureTrigger = "run_failure"
    #: The failure as one line of text (the step's description in the event log).
    message: str = ""
    #: Per input alias, [column, type] pairs: what the failed module read.
    input_schemas: dict[str, list[list[str]]] = Field(default_factory=dict)
    #: The failed rules of a `trigger_agent` Assert (trigger "assert").
    failed_rules: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _legacy_shape(cls, data: Any) -> Any:
        # Event logs written before this record kept the Spark facts under "spark".
        if isinstance(data, Mapping) and "error" not in data and "spark" in data:
            data = {**data, "error": data["spark"]}
        return data

    @field_validator("input_schemas", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> dict[str, list[list[str]]]:
        return {str(alias): [[str(part) for part in column] for column in columns]
                for alias, columns in (value or {}).items()}  # fmt: skip

    @classmethod
    def for_assert(cls, module_id: str, failed_rules: Sequence[Mapping[str, Any]]) -> FailureRecord:
        """A `trigger_agent` Assert's failed rules: no Spark error, the rules are the news."""
        rules = [dict(rule) for rule in failed_rules]
        message = "; ".join(str(rule.get("message", "")) for rule in rules)
        error = SparkErrorInfo(exception_class="AssertionFailed", condition="AQ_ASSERT_FAILED", message=message)
        return cls(module_id=module_id, error=error, trigger="assert", message=message, failed_rules=rules)

    @classmethod
    def from_failure(cls, failure: ModuleFailed, input_schemas: Mapping[str, Sequence[Sequence[str]]]) -> FailureRecord:
        """The record of a module that failed on Spark, with what its inputs looked like."""
        return cls(module_id=failure.module_id or "", error=failure.error, message=str(failure),
                   input_schemas=dict(input_schemas))  # fmt: skip

    def redacted(self, redactor: Any) -> FailureRecord:
        """This record with secrets and data values removed (`redactor`: healing.redaction.Redactor).

        The Spark facts decide what is data (their SQLSTATE class, their parameters): the
        message is redacted as they say; column names come from the data, secrets out.
        """
        facts = self.error.to_dict()
        return self.model_copy(
            update={
                "message": redactor.error_text(self.message, facts),
                "error": self.error.redacted(redactor),
                "input_schemas": redactor.data(self.input_schemas),
                "failed_rules": redactor.data(self.failed_rules, data_literals=True),
            }
        )

    def signature(self, blueprint_id: str | None = None) -> str:
        return self.error.signature(blueprint_id=blueprint_id, module_id=self.module_id if blueprint_id else None)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> FailureRecord:
        """The inverse of `to_json`; also takes the decoded JSON (as Dagster's metadata returns it)."""
        if isinstance(data, (str, bytes)):
            return cls.model_validate_json(data)
        return cls.model_validate(dict(data))


def _python_exception_class(traceback: str) -> str | None:
    for line in reversed(traceback.strip().splitlines()):
        match = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt))\b", line)
        if match:
            return match.group(1)
    return None


# --------------------------------------------------------------------------- our own conditions


class ConditionError(EngineError):
    """An engine-side failure named like a Spark condition (`AQ_*`), so healers can act on it.

    Raised by module executors for problems Spark itself would not report (a schema hint that
    does not match, an unknown Channel op, a missing config key). `message_parameters` hold
    the facts, as Spark's do.
    """

    def __init__(
        self,
        condition: str,
        message: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        hint: str | None = None,
        sqlstate: str | None = None,
        module_id: str | None = None,
    ) -> None:
        self.condition = condition
        self.sqlstate = sqlstate
        self.message_parameters = {str(k): str(v) for k, v in (parameters or {}).items()}
        super().__init__(f"[{condition}] {message}", hint=hint, module_id=module_id)

    def __reduce__(self) -> Any:
        return (
            _rebuild_condition_error,
            (self.condition, self.message, self.message_parameters, self.hint, self.sqlstate),
        )


def _rebuild_condition_error(
    condition: str, message: str, parameters: dict[str, str], hint: str | None, sqlstate: str | None
) -> ConditionError:
    error = ConditionError.__new__(ConditionError)
    error.condition = condition
    error.sqlstate = sqlstate
    error.message_parameters = parameters
    EngineError.__init__(error, message, hint=hint)
    return error


# --------------------------------------------------------------------------- extraction


def extract_spark_error(exc: BaseException) -> SparkErrorInfo:
    """The structured facts of any exception a module can raise.

    PySpark exceptions are read through `getCondition()`, `getSqlState()` and
    `getMessageParameters()`; a raw `Py4JJavaError` through its Java exception and the
    `getCause()` chain (Spark often wraps the telling condition one level down); a Spark
    Connect exception, which has no Java object behind it, through the server's stack trace
    it carries; anything else through its class, message and `__cause__` chain.
    """
    if isinstance(exc, ModuleFailed):
        return exc.error
    if isinstance(exc, ConditionError):
        return _info(
            exc,
            condition=exc.condition,
            sqlstate=exc.sqlstate,
            parameters=exc.message_parameters,
            message=exc.message,
            java_class=None,
            chain=_python_chain(exc),
        )
    try:
        from pyspark.errors import PySparkException
    except ImportError:  # pragma: no cover - pyspark is a dependency
        PySparkException = ()  # type: ignore[assignment]
    if isinstance(exc, PySparkException):
        return _from_pyspark(exc)
    java = _java_exception(exc)
    if java is not None:
        return _from_java(exc, java)
    return _info(
        exc,
        condition=None,
        sqlstate=None,
        parameters={},
        message=str(exc) or type(exc).__name__,
        java_class=None,
        chain=_python_chain(exc),
    )


def _info(
    exc: BaseException,
    *,
    condition: str | None,
    sqlstate: str | None,
    parameters: Mapping[str, Any] | None,
    message: str,
    java_class: str | None,
    chain: list[str],
    query_context: list[dict[str, Any]] | None = None,
) -> SparkErrorInfo:
    exception_class = type(exc).__name__
    params = {str(k): str(v) for k, v in (parameters or {}).items()}
    message = message.strip()[:_MAX_MESSAGE]
    return SparkErrorInfo(
        exception_class=exception_class,
        condition=condition or None,
        sqlstate=sqlstate or None,
        message_parameters=params,
        message=message,
        java_class=java_class,
        cause_chain=chain,
        transient=is_transient(
            exception_class=exception_class,
            condition=condition,
            sqlstate=sqlstate,
            message=message,
            cause_chain=chain,
            java_class=java_class,
        ),
        query_context=query_context or [],
    )


def _from_pyspark(exc: Any) -> SparkErrorInfo:
    origin = getattr(exc, "_origin", None)
    condition = _safe(exc.getCondition)
    sqlstate = _safe(exc.getSqlState)
    parameters = _safe(exc.getMessageParameters) or {}
    if condition is None and type(exc).__name__ == "PythonException":
        condition, sqlstate, parameters = _python_worker_fields(exc, sqlstate, parameters)
    links = _java_links(origin) if origin is not None else _connect_links(exc)
    # A wrapper condition defers to the first telling one below it.
    message = None
    chosen = telling_index([condition] + [link["condition"] for link in links[1:]])
    if chosen:
        inner = links[chosen]
        condition, sqlstate, parameters = inner["condition"], inner["sqlstate"], inner["parameters"]
        message = inner["message"]
    message = message or _safe(exc.getMessage) or getattr(exc, "_desc", None) or str(exc)
    if condition == "PYTHON_EXCEPTION" and "traceback" in parameters:
        message = f"{parameters.get('msg', '')}:\n{parameters['traceback'].strip()}"
    chain = [link["text"] for link in links] or _python_chain(exc)
    return _info(
        exc,
        condition=condition,
        sqlstate=sqlstate,
        parameters=parameters,
        message=message,
        java_class=links[0]["java_class"] if links else None,
        chain=chain,
        query_context=_query_context(exc),
    )


_PYTHON_WORKER = re.compile(
    r"\[PYTHON_EXCEPTION\] (?P<msg>[^\n]*?): (?P<traceback>Traceback \(most recent call last\).*?)"
    r"(?:\n\s*SQLSTATE: (?P<sqlstate>[0-9A-Z]{5}))?\s*$",
    re.DOTALL,
)


def _python_worker_fields(
    exc: Any, sqlstate: str | None, parameters: dict[str, str]
) -> tuple[str | None, str | None, dict[str, str]]:
    """A Python UDF failure as classic PySpark reports it (PYTHON_EXCEPTION, msg, traceback).

    Spark Connect sends it as a bare PythonException whose message holds the server's text.
    """
    match = _PYTHON_WORKER.search(str(getattr(exc, "_message", None) or exc))
    if match is None:
        return None, sqlstate, parameters
    traceback = match.group("traceback").rstrip() + "\n"
    fields = {"msg": match.group("msg"), "traceback": traceback}
    return "PYTHON_EXCEPTION", sqlstate or match.group("sqlstate"), fields


def _from_java(exc: BaseException, java: Any) -> SparkErrorInfo:
    links = _java_links(java)
    index = telling_index([link["condition"] for link in links])
    chosen = links[index] if index is not None else None
    head = chosen or (links[0] if links else None)
    return _info(
        exc,
        condition=chosen["condition"] if chosen else None,
        sqlstate=chosen["sqlstate"] if chosen else None,
        parameters=chosen["parameters"] if chosen else {},
        message=(head["message"] if head else "") or str(exc).splitlines()[0],
        java_class=links[0]["java_class"] if links else None,
        chain=[link["text"] for link in links],
        # A failed write (`o123.save`) reaches us as a raw Py4JJavaError: where the fault is
        # written is known only from the Spark throwable's own query context.
        query_context=(chosen or {}).get("query_context") or [],
    )


def telling_index(conditions: Sequence[str | None]) -> int | None:
    """Which condition of a cause chain (outermost first) says most about the failure.

    The outermost one, unless it only reports that something below failed
    (FAILED_READ_FILE.NO_HINT, TASK_WRITE_FAILED) and a link below has a condition.
    """
    present = [i for i, condition in enumerate(conditions) if condition]
    for index in present:
        if conditions[index] not in _WRAPPER_CONDITIONS:
            return index
    return present[0] if present else None


def _java_exception(exc: BaseException) -> Any:
    try:
        from py4j.protocol import Py4JJavaError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, Py4JJavaError):
        return getattr(exc, "java_exception", None)
    return None


def _java_links(throwable: Any) -> list[dict[str, Any]]:
    """Each Java throwable of a cause chain: class, message, and Spark condition when it has one."""
    links: list[dict[str, Any]] = []
    seen: set[int] = set()
    current = throwable
    while current is not None and len(links) < _MAX_CHAIN:
        try:
            key = current.hashCode()
            if key in seen:
                break
            seen.add(key)
            java_class = str(current.getClass().getName())
            message = str(current.getMessage() or "")
        except Exception:  # noqa: BLE001 - the JVM may be gone; keep what we have
            break
        condition, sqlstate, parameters = _spark_throwable_fields(current)
        first_line = message.strip().splitlines()[0] if message.strip() else ""
        links.append(
            {
                "java_class": java_class,
                "message": message,
                "condition": condition,
                "sqlstate": sqlstate,
                "parameters": parameters,
                "text": f"{java_class}: {first_line}"[:_MAX_LINK],
                "query_context": _java_query_context(current) if condition else [],
            }
        )
        try:
            current = current.getCause()
        except Exception:  # noqa: BLE001
            break
    return links


_CAUSED_BY = re.compile(r"^Caused by: ([\w.$]+)(?::\s?(.*))?$")
_LEADING_CONDITION = re.compile(r"^\[([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\]")
_SQLSTATE_IN_TEXT = re.compile(r"SQLSTATE: ([0-9A-Z]{5})")


def _connect_links(exc: Any) -> list[dict[str, Any]]:
    """The cause chain of a Spark Connect exception, as `_java_links` gives it for Py4J.

    The server sends its JVM stack trace: the root class on the first line, then one
    `Caused by: class: message` line per cause. Causes carry no structured fields over the
    wire; their condition and SQLSTATE are read from the message (`[CONDITION] ... SQLSTATE:`).
    """
    trace = _safe(getattr(exc, "getStackTrace", None))
    if not isinstance(trace, str) or not trace.strip():
        return []
    lines = trace.splitlines()
    message = str(getattr(exc, "_message", None) or "")
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    root_class = lines[0].strip()
    links = [
        {
            "java_class": root_class,
            "message": message,
            "condition": _safe(exc.getCondition),
            "sqlstate": _safe(exc.getSqlState),
            "parameters": _safe(exc.getMessageParameters) or {},
            "text": f"{root_class}: {first_line}"[:_MAX_LINK],
        }
    ]
    for line in lines[1:]:
        match = _CAUSED_BY.match(line.strip())
        if match is None:
            continue
        if len(links) >= _MAX_CHAIN:
            break
        java_class, text = match.group(1), (match.group(2) or "").strip()
        condition = _LEADING_CONDITION.match(text)
        sqlstate = _SQLSTATE_IN_TEXT.search(text)
        links.append(
            {
                "java_class": java_class,
                "message": text,
                "condition": condition.group(1) if condition else None,
                "sqlstate": sqlstate.group(1) if sqlstate else None,
                "parameters": {},
                "text": f"{java_class}: {text}"[:_MAX_LINK],
            }
        )
    status = _safe(getattr(exc, "getGrpcStatusCode", None))
    if status is not None and getattr(status, "name", "") == "UNAVAILABLE":
        unreachable = "StatusCode.UNAVAILABLE: the Spark Connect server is unreachable"
        links.append(
            {"java_class": None, "message": unreachable, "condition": None, "sqlstate": None,
             "parameters": {}, "text": unreachable}  # fmt: skip
        )
    return links


def _spark_throwable_fields(throwable: Any) -> tuple[str | None, str | None, dict[str, str]]:
    try:
        from py4j.java_gateway import is_instance_of
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        if gateway is None or not is_instance_of(
            gateway, throwable, "org.apache.spark.SparkThrowable"
        ):
            return None, None, {}
        utils = SparkContext._jvm.PythonErrorUtils  # type: ignore[union-attr]
        parameters = utils.getMessageParameters(throwable)
        return (
            utils.getCondition(throwable),
            utils.getSqlState(throwable),
            {str(k): str(v) for k, v in dict(parameters or {}).items()},
        )
    except Exception:  # noqa: BLE001 - a dead gateway must not hide the original error
        return None, None, {}


def _java_query_context(throwable: Any) -> list[dict[str, Any]]:
    """A SparkThrowable's query context (the SQL fragment it points at), read over Py4J."""
    contexts: list[dict[str, Any]] = []
    try:
        for context in list(throwable.getQueryContext() or [])[:_MAX_CHAIN]:
            item: dict[str, Any] = {}
            for name in ("contextType", "objectType", "objectName", "fragment", "summary"):
                value = _safe(getattr(context, name, None))
                if value not in (None, ""):
                    item[name] = str(value.toString() if hasattr(value, "toString") else value)[:_MAX_LINK]
            if item:
                contexts.append(item)
    except Exception:  # noqa: BLE001 - not a SparkThrowable, or the JVM is gone
        return []
    return contexts


def _python_chain(exc: BaseException) -> list[str]:
    chain: list[str] = []
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(current))
        first_line = (str(current).strip().splitlines() or [""])[0]
        chain.append(f"{type(current).__name__}: {first_line}"[:_MAX_LINK])
        current = current.__cause__ or current.__context__
    return chain


def _query_context(exc: Any) -> list[dict[str, Any]]:
    contexts: list[dict[str, Any]] = []
    for context in _safe(exc.getQueryContext) or []:
        item: dict[str, Any] = {}
        for name in ("contextType", "objectType", "objectName", "fragment", "summary"):
            value = _safe(getattr(context, name, None))
            if value not in (None, ""):
                item[name] = str(getattr(value, "name", value))[:_MAX_LINK]
        if item:
            contexts.append(item)
    return contexts


def _safe(method: Any) -> Any:
    if method is None:
        return None
    try:
        return method()
    except Exception:  # noqa: BLE001 - missing on some exception types, or the JVM is gone
        return None


# --------------------------------------------------------------------------- module failures

_HINTS: dict[str, str] = {
    "UNRESOLVED_COLUMN": "check the column name against the input's columns{proposal}",
    "UNRESOLVED_FIELD": "check the field name{proposal}",
    "TABLE_OR_VIEW_NOT_FOUND": "a SQL Channel sees its inputs as views named by their aliases",
    "PATH_NOT_FOUND": "check `path`; relative paths resolve against the working directory",
    "PATH_ALREADY_EXISTS": "mode 'error' never writes over data; use overwrite, append or ignore",
    "DELTA_PATH_EXISTS": "mode 'error' never writes over data; use overwrite, append or ignore",
    "CAST_INVALID_INPUT": "fix the data or the target type, or use try_cast(...) to get NULL",
    "DIVIDE_BY_ZERO": "guard the divisor, or use try_divide(...) to get NULL",
    "ARITHMETIC_OVERFLOW": "widen the type, or use the try_* function to get NULL",
    "AMBIGUOUS_REFERENCE": "qualify the column with its input alias, e.g. alias.column",
    "PARSE_SYNTAX_ERROR": "fix the SQL syntax at the position shown",
    "FAILED_READ_FILE": "the file does not match `format` (or is corrupt); check format and path",
    "DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE": (
        "the source has several rows per merge_key; deduplicate it before the Egress"
    ),
}


def hint_for(error: SparkErrorInfo, *, input_aliases: Iterable[str] = ()) -> str | None:
    """A what-to-do line for well-known conditions, or None."""
    if not error.condition:
        return None
    family = error.condition.split(".")[0]
    template = _HINTS.get(error.condition) or _HINTS.get(family)
    if template is None:
        return None
    proposal = error.message_parameters.get("proposal")
    hint = template.format(proposal=f" (Spark suggests: {proposal})" if proposal else "")
    aliases = sorted(set(input_aliases))
    if family == "TABLE_OR_VIEW_NOT_FOUND" and aliases:
        hint += f"; this module's inputs are: {', '.join(aliases)}"
    return hint


class ModuleFailed(EngineError):
    """A module failed on Spark; `error` holds the structured facts."""

    def __init__(
        self,
        module_id: str,
        error: SparkErrorInfo,
        *,
        hint: str | None = None,
        location: SourceLocation | None = None,
    ) -> None:
        self.error = error
        # Decided once, by the error itself (instance attribute over the class default).
        self.transient = error.transient
        head = error.condition or error.exception_class
        text = error.message or error.exception_class
        message = text if text.startswith(f"[{head}]") else f"[{head}] {text}"
        super().__init__(message, location=location, module_id=module_id, hint=hint)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "spark_error": self.error.to_dict()}

    def __reduce__(self) -> Any:
        return (_rebuild_module_failed, (self.module_id, self.error.to_dict(), self.hint))


def _rebuild_module_failed(module_id: str, error: dict[str, Any], hint: str | None) -> ModuleFailed:
    return ModuleFailed(module_id, SparkErrorInfo.from_dict(error), hint=hint)


def module_failure(
    module: Any, exc: BaseException, input_aliases: Iterable[str] = ()
) -> ModuleFailed:
    """`exc`, raised while running `module` (a CompiledModule), as a ModuleFailed."""
    if isinstance(exc, ModuleFailed):
        return exc
    error = extract_spark_error(exc)
    hint = exc.hint if isinstance(exc, ConditionError) else None
    return ModuleFailed(
        module.id,
        error,
        hint=hint or hint_for(error, input_aliases=input_aliases),
        location=location_of(module),
    )


def location_of(module: Any) -> SourceLocation | None:
    """A CompiledModule's Blueprint location, as the error root wants it."""
    where = getattr(module, "location", None)
    return where.as_source() if where is not None else None


class AssertionFailed(EngineError):
    """An Assert module had a failed rule whose action blocks the run (abort, trigger_agent)."""

    def __init__(self, module_id: str, outcome: Any, *, location: SourceLocation | None = None):
        self.outcome = outcome
        failed = [r for r in outcome.results if not r.passed]
        rules = "; ".join(f"{r.name} ({r.action}): {r.message}" for r in failed)
        super().__init__(
            f"Assert failed: {rules}",
            location=location,
            module_id=module_id,
            hint="fix the upstream data, or relax the rule (or set on_fail: warn) if it is wrong",
        )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["outcome"] = self.outcome.to_dict()
        return data

    def __reduce__(self) -> Any:
        return (AssertionFailed, (self.module_id, self.outcome))
