"""Drift against the last good run: the evidence (healing/drift.py) and the rules that act on
it only where it admits one reading (healing/rules/drift_evidence.py), deferring with the evidence otherwise."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aqueduct_dagster.engine.errors import SparkErrorInfo
from aqueduct_dagster.healing import drift
from aqueduct_dagster.healing.failure import FailurePackage, NeighbourModule
from aqueduct_dagster.healing.rules import Refusal, diagnose_with_rules

# --------------------------------------------------------------------------- field_diff


def test_one_removed_and_one_added_of_the_same_type_is_a_rename():
    diff = drift.field_diff([("id", "int"), ("signup_date", "string")], [("id", "int"), ("signup date", "string")])
    assert diff["renamed"] == [["signup_date", "signup date", "string"]]
    assert diff["removed"] == [["signup_date", "string"]] and diff["added"] == [["signup date", "string"]]


def test_two_new_columns_of_the_removed_type_are_ambiguous_not_a_pick():
    diff = drift.field_diff([("price", "double")], [("price_net", "double"), ("price_gross", "double")])
    assert diff["renamed"] == []
    assert diff["rename_candidates"] == {"price": ["price_net", "price_gross"]}


def test_a_new_column_of_another_type_is_no_rename():
    diff = drift.field_diff([("amount", "double")], [("amount_txt", "string")])
    assert diff["renamed"] == [] and diff["rename_candidates"] == {}


def test_two_removed_columns_competing_for_one_new_one_are_ambiguous():
    diff = drift.field_diff([("a", "int"), ("b", "int")], [("c", "int")])
    assert diff["renamed"] == []


def test_nested_rename_needs_the_same_parent():
    good = [("device", "struct"), ("device.os", "struct"), ("device.os.name", "string"), ("device.model", "string")]
    now = [("device", "struct"), ("device.os", "struct"), ("device.os.family", "string"), ("device.model", "string")]
    assert drift.field_diff(good, now)["renamed"] == [["device.os.name", "device.os.family", "string"]]
    moved = [("device", "struct"), ("device.os", "struct"), ("device.model", "string"), ("device.family", "string")]
    assert drift.field_diff(good, moved)["renamed"] == []


def test_fields_under_a_removed_struct_count_once():
    good = [("meta", "struct"), ("meta.a", "int"), ("meta.b", "int")]
    diff = drift.field_diff(good, [])
    assert diff["removed"] == [["meta", "struct"]]


def test_retyped_column_is_reported():
    diff = drift.field_diff([("priority", "int")], [("priority", "string")])
    assert diff["retyped"] == [["priority", "int", "string"]]


# --------------------------------------------------------------------------- delimiter and format


def _csv_snapshot(names: list[str], sep: str | None = None) -> dict:
    return {"format": "csv", "options": {"sep": sep} if sep else {}, "fields": [[n, "string"] for n in names]}


@pytest.mark.parametrize("new", [";", "|", "\t"])
def test_a_collapsed_header_is_a_delimiter_change(new):
    names = ["sku", "category", "price"]
    change = drift.delimiter_change(_csv_snapshot(names), [[new.join(names), "string"]])
    assert change is not None and change["from"] == "," and change["to"] == new


def test_back_from_semicolon_to_comma():
    names = ["a", "b", "c"]
    change = drift.delimiter_change(_csv_snapshot(names, ";"), [["a,b,c", "string"]])
    assert change is not None and change["to"] == ","


def test_a_single_column_not_named_like_the_old_header_is_no_delimiter_change():
    assert drift.delimiter_change(_csv_snapshot(["sku", "price"]), [["x;y;z", "string"]]) is None
    assert drift.delimiter_change(_csv_snapshot(["only"]), [["only", "string"]]) is None


def test_sniff_tells_formats_from_content_not_names(tmp_path):
    folder = tmp_path / "inventory"
    folder.mkdir()
    (folder / "part-0.parquet").write_text("warehouse;sku;on_hand\nAMS;1;2\nRTM;2;3\n")  # a lying suffix
    (folder / "_SUCCESS").write_text("")
    assert drift.sniff_format(folder) == {"format": "csv", "files": 1, "sep": ";"}
    pq.write_table(pa.table({"a": [1]}), tmp_path / "data.csv")
    assert drift.sniff_format(tmp_path / "data.csv")["format"] == "parquet"
    (tmp_path / "events.txt").write_text('{"a": 1}\n{"a": 2}\n')
    assert drift.sniff_format(tmp_path / "events.txt")["format"] == "json"


def test_sniff_refuses_a_folder_of_mixed_formats(tmp_path):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("a,b\n1,2\n3,4\n")
    assert drift.sniff_format(tmp_path) is None


# --------------------------------------------------------------------------- moved location


class _Module:
    """The two things moved_location reads of an Ingress: its id and config.path."""

    def __init__(self, path):
        self.id = "refunds"
        self.config = type("Config", (), {"path": str(path), "options": {}, "format": "parquet"})()


def _reader(schemas):
    return lambda module: schemas.get(module.config.path, {"error": "PATH_NOT_FOUND"})


def test_moved_folder_is_the_one_with_the_old_schema_that_is_not_older(tmp_path, monkeypatch):
    good_fields = [["refund_id", "bigint"], ["amount", "double"]]
    old_stamp = time.time() - 100 * 86400
    for name, stamp in (("refunds-2026-h1", None), ("refunds_2025_h2", old_stamp), ("other", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-0.parquet").write_bytes(b"PAR1")
        if stamp:
            os.utime(tmp_path / name / "part-0.parquet", (stamp, stamp))
    schemas = {str(tmp_path / "refunds-2026-h1"): {"fields": good_fields},
               str(tmp_path / "refunds_2025_h2"): {"fields": good_fields},
               str(tmp_path / "other"): {"fields": [["x", "int"]]}}  # fmt: skip
    monkeypatch.setattr(drift, "with_config", lambda module, path: _Module(path))
    good = {"fields": good_fields, "files": {"count": 1, "newest_mtime": time.time() - 86400}}
    moved = drift.moved_location(_Module(tmp_path / "refunds_2026_h1"), good, _reader(schemas))
    assert moved["to"] == str(tmp_path / "refunds-2026-h1")
    shown = {c["path"].rsplit("/", 1)[-1]: c for c in moved["candidates"]}
    assert shown["refunds_2025_h2"] == {"path": str(tmp_path / "refunds_2025_h2"), "same_schema": True, "not_older": False}
    assert shown["other"]["same_schema"] is False


def test_two_fitting_folders_decide_nothing(tmp_path, monkeypatch):
    fields = [["id", "bigint"]]
    for name in ("a_2026", "a-2026"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "p.parquet").write_bytes(b"PAR1")
    schemas = {str(tmp_path / n): {"fields": fields} for n in ("a_2026", "a-2026")}
    monkeypatch.setattr(drift, "with_config", lambda module, path: _Module(path))
    moved = drift.moved_location(_Module(tmp_path / "a2026"), {"fields": fields, "files": {}}, _reader(schemas))
    assert moved["to"] is None and len(moved["candidates"]) == 2


# --------------------------------------------------------------------------- rules on drift


def _package(condition, params, query, drift_entries, *, inputs=("orders",), module_type="Channel",
             config=None, failed="clean") -> FailurePackage:  # fmt: skip
    config = config if config is not None else {"op": "sql", "query": query}
    return FailurePackage(
        heal_id="h1", blueprint_id="bp", blueprint_path="bp.yml", failed_module=failed, module_type=module_type,
        error=SparkErrorInfo(condition=condition, message_parameters=params), signature="sig",
        module_raw={"id": failed, "type": module_type, "config": config}, module_compiled={},
        neighbourhood=[NeighbourModule(id=failed, type=module_type, role="failed", inputs=list(inputs), config=config)],
        last_good_run="good-1", drift=drift_entries,
    )  # fmt: skip


def _columns(module_id, good, now):
    return {module_id: {"module_id": module_id, "kind": "columns", "columns_before": [n for n, _ in good],
                        **drift.field_diff(good, now)}}  # fmt: skip


def test_rename_from_drift_quotes_a_name_with_a_space():
    entries = _columns("users", [("user_id", "string"), ("signup_date", "string")],
                       [("user_id", "string"), ("signup date", "string")])
    package = _package("UNRESOLVED_COLUMN.WITH_SUGGESTION", {"objectName": "`signup_date`"},
                       "SELECT user_id, CAST(signup_date AS DATE) AS signup_date FROM users", entries, inputs=("users",))
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is not None, diagnosis.reason
    [op] = diagnosis.patch.model_dump()["operations"]
    assert "CAST(`signup date` AS DATE) AS signup_date" in op["value"]


def test_a_column_gone_without_a_replacement_defers_with_the_evidence():
    entries = _columns("orders", [("order_id", "int"), ("discount_pct", "int"), ("gross", "double")],
                       [("order_id", "int"), ("gross", "double")])
    package = _package("UNRESOLVED_COLUMN.WITH_SUGGESTION", {"objectName": "`discount_pct`", "proposal": "`gross`"},
                       "SELECT order_id, gross * (1 - discount_pct / 100) AS net FROM orders", entries)
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is None
    assert "discount_pct" in diagnosis.reason and "no new field of its type" in diagnosis.reason


def test_two_candidates_defer_and_name_both():
    entries = _columns("items", [("item_id", "int"), ("price", "double")],
                       [("item_id", "int"), ("price_net", "double"), ("price_gross", "double")])
    package = _package("UNRESOLVED_COLUMN.WITH_SUGGESTION", {"objectName": "`price`"},
                       "SELECT item_id, price FROM items WHERE price > 0", entries, inputs=("items",))
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is None
    assert "price_net" in diagnosis.reason and "price_gross" in diagnosis.reason


def test_a_typo_in_the_blueprint_still_gets_the_name_reading():
    # The good run had `event_time` too: nothing drifted, the Blueprint asks for a name never there.
    entries = _columns("events", [("event_time", "string")], [("event_time", "string")])
    package = _package("UNRESOLVED_COLUMN.WITH_SUGGESTION", {"objectName": "`event_tme`", "proposal": "`event_time`"},
                       "SELECT event_tme FROM events", entries, inputs=("events",))
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is not None and "event_time" in diagnosis.patch.model_dump()["operations"][0]["value"]


def test_nested_rename_rewrites_the_path_only():
    good = [("device", "struct"), ("device.os", "struct"), ("device.os.name", "string"), ("name", "string")]
    now = [("device", "struct"), ("device.os", "struct"), ("device.os.family", "string"), ("name", "string")]
    entries = {"sessions": {"module_id": "sessions", "kind": "ingress", **drift.field_diff(good, now)}}
    package = _package("FIELD_NOT_FOUND", {"fieldName": "`name`", "fields": "`family`, `version`"},
                       "SELECT name, device.os.name AS os_name FROM sessions", entries, inputs=("sessions",))
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is not None, diagnosis.reason
    value = diagnosis.patch.model_dump()["operations"][0]["value"]
    assert value == "SELECT name, device.os.family AS os_name FROM sessions"


def test_ambiguous_column_is_qualified_with_the_side_that_had_it():
    query = "SELECT s.shipment_id, c.carrier_name, region FROM shipments s JOIN carriers c ON s.carrier_id = c.carrier_id"
    entries = {
        **_columns("shipments", [("shipment_id", "int"), ("region", "string")], [("shipment_id", "int"), ("region", "string")]),
        **_columns("carriers", [("carrier_id", "int")], [("region", "string"), ("carrier_id", "int")]),
    }
    # Spark lists the carriers side first: the side that gained the column.
    package = _package("AMBIGUOUS_REFERENCE", {"name": "`region`", "referenceNames": "[`c`.`region`, `s`.`region`]"},
                       query, entries, inputs=("shipments", "carriers"))
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is not None, diagnosis.reason
    assert "c.carrier_name, s.region FROM" in diagnosis.patch.model_dump()["operations"][0]["value"]


def test_ambiguous_column_without_evidence_defers():
    query = "SELECT region FROM shipments s JOIN carriers c ON s.id = c.id"
    package = _package("AMBIGUOUS_REFERENCE", {"name": "`region`", "referenceNames": "[`c`.`region`, `s`.`region`]"},
                       query, {}, inputs=("shipments", "carriers"))
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is None and "picks the side" in diagnosis.reason


def test_delimiter_rule_sets_sep_on_the_ingress_only_when_it_restores_the_schema():
    change = {"from": ",", "to": ";", "header": "a;b", "columns_recognised": "2 of 2", "restores_schema": True}
    entries = {"products": {"module_id": "products", "kind": "ingress", "delimiter": change}}
    package = _package("UNRESOLVED_COLUMN.WITH_SUGGESTION", {"objectName": "`a`"}, "SELECT a FROM products", entries,
                       inputs=("products",))
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is not None
    assert diagnosis.patch.model_dump()["operations"] == [
        {"op": "set_module_config_key", "module_id": "products", "key": "options.sep", "value": ";"}
    ]
    entries["products"]["delimiter"] = {**change, "restores_schema": False}
    package = _package("UNRESOLVED_COLUMN.WITH_SUGGESTION", {"objectName": "`a`"}, "SELECT a FROM products", entries,
                       inputs=("products",))
    refused = diagnose_with_rules(package)
    assert refused.patch is None and "does not give back the columns" in refused.reason


def test_moved_input_without_a_single_fitting_folder_defers_with_candidates():
    moved = {"from": "/d/refunds_2026", "to": None,
             "candidates": [{"path": "/d/refunds_2025", "same_schema": True, "not_older": False}]}  # fmt: skip
    package = _package("PATH_NOT_FOUND", {"path": "file:/d/refunds_2026"}, "", {"refunds": {"kind": "ingress", "module_id": "refunds", "location": moved}},
                       module_type="Ingress", config={"format": "parquet", "path": "/d/refunds_2026"}, failed="refunds", inputs=())  # fmt: skip
    diagnosis = diagnose_with_rules(package)
    assert diagnosis.patch is None
    assert "/d/refunds_2025" in diagnosis.reason and "older" in diagnosis.reason


def test_refusal_is_a_value_not_a_patch():
    assert isinstance(Refusal("x"), Refusal)


def _retyped_package(measure, *, hint=True):
    config = {"format": "parquet", "path": "/d/tickets", **({"schema_hint": {"ticket_id": "long", "priority": "int"}} if hint else {})}
    reader = {"op": "sql", "query": "SELECT ticket_id, priority, team FROM tickets WHERE priority <= 2"}
    entries = {"tickets": {"module_id": "tickets", "kind": "ingress", **drift.field_diff(
        [("ticket_id", "bigint"), ("priority", "int")], [("ticket_id", "bigint"), ("priority", "string")]),
        "cast_back": {"priority": measure}}}  # fmt: skip
    return FailurePackage(
        heal_id="h1", blueprint_id="bp", blueprint_path="bp.yml", failed_module="tickets", module_type="Ingress",
        error=SparkErrorInfo(condition="AQ_SCHEMA_HINT_MISMATCH", message_parameters={"column": "priority", "actual": "string"}),
        signature="sig", module_raw={"id": "tickets", "type": "Ingress", "config": config}, module_compiled={},
        neighbourhood=[NeighbourModule(id="tickets", type="Ingress", role="failed", config=config),
                       NeighbourModule(id="urgent", type="Channel", role="downstream", inputs=["tickets"], config=reader)],
        last_good_run="good-1", drift=entries,
    )  # fmt: skip


def test_a_retyped_column_whose_values_all_cast_back_keeps_its_published_type():
    diagnosis = diagnose_with_rules(_retyped_package({"rows": 40, "had": 40, "kept": 40}))
    assert diagnosis.rule == "retyped_column", diagnosis.reason
    operations = diagnosis.patch.model_dump()["operations"]
    assert {"op": "set_module_config_key", "module_id": "tickets", "key": "schema_hint.priority", "value": "string"} in operations
    [query] = [op["value"] for op in operations if op["module_id"] == "urgent"]
    assert query == ("SELECT ticket_id, CAST(priority AS int) AS priority, team FROM tickets "
                     "WHERE CAST(priority AS int) <= 2")  # fmt: skip


def test_a_retyped_column_with_values_that_no_longer_cast_defers():
    diagnosis = diagnose_with_rules(_retyped_package({"rows": 40, "had": 40, "kept": 3}))
    assert diagnosis.patch is None and "37 of 40 sampled values no longer cast" in diagnosis.reason


@pytest.mark.parametrize("lost_markers, fixed", [(10, True), (4, False)])
def test_try_cast_only_drops_empty_markers_never_data_in_a_new_shape(lost_markers, fixed):
    query = "SELECT booking_id, CAST(check_in AS DATE) AS check_in FROM bookings"
    package = _package("CAST_INVALID_INPUT", {"targetType": '"DATE"'}, query, {}, inputs=("bookings",))
    package.fault = {"evidence": {"measured": True, "kind": "cast", "expression": "CAST(check_in AS DATE)",
                                  "rows": 30, "had_values": 30, "kept_values": 20, "lost_markers": lost_markers}}  # fmt: skip
    diagnosis = diagnose_with_rules(package)
    assert (diagnosis.patch is not None) is fixed, diagnosis.reason
    if not fixed:
        assert "6 of 30 sampled values" in diagnosis.reason and "new shape" in diagnosis.reason


def test_a_new_unrelated_column_appearing_elsewhere_is_no_rename():
    # discount_pct vanished and loyalty_points (same type) appeared at the end: nothing ties them.
    good = [("order_id", "int"), ("discount_pct", "int"), ("gross", "double")]
    now = [("order_id", "int"), ("gross", "double"), ("loyalty_points", "int")]
    diff = drift.field_diff(good, now)
    assert diff["renamed"] == [] and diff["rename_candidates"] == {"discount_pct": ["loyalty_points"]}
    # A shared suffix is no tie: humidity and battery levels are both percentages.
    sensors = [("device_id", "string"), ("humidity_pct", "double"), ("temp_c", "double")]
    assert drift.field_diff(sensors, [("device_id", "string"), ("temp_c", "double"), ("battery_pct", "double")])[
        "renamed"] == []
    # ...while the same place among its siblings, or a similar name, does tie them.
    assert drift.field_diff(good, [("order_id", "int"), ("rebate", "int"), ("gross", "double")])["renamed"]
    assert drift.field_diff(good, [("order_id", "int"), ("gross", "double"), ("discount_percent", "int")])["renamed"]
