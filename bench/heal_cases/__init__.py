"""Realistic upstream breakages for the end-to-end heal benchmark (bench/heal_e2e.py).

One module per case, each exposing `CASE`. A case knows how to write the good input, the
Blueprint that reads it, how the upstream data then changes, and the answer a correct
pipeline would publish for the changed input, computed with pandas from the files alone
(never from the project's output).
"""

from __future__ import annotations

import importlib

from heal_cases.common import Case

#: Module names under heal_cases/, in the order the benchmark runs them.
CASE_MODULES = (
    "renamed_column",
    "renamed_column_with_space",
    "renamed_nested_field",
    "csv_delimiter_change",
    "parquet_folder_became_csv",
    "renamed_folder_with_decoy",
    "ambiguous_after_join",
    "lazy_cast_in_assert",
    "lazy_divide_in_egress",
    "retyped_int_to_string",
    "renamed_input_file",
    "column_gone",
    "ambiguous_rename",
    "status_case_change",
    "currency_strings",
    "date_format_flip",
)

#: Cases written apart from the healer (not fitted to it): run with `heal_e2e.py --heldout`.
HELDOUT_MODULES = (
    "heldout_tab_delimited_two_channels",
    "heldout_jsonl_folder_became_parquet",
    "heldout_renamed_column_in_macro",
    "heldout_renamed_nested_parquet_junction",
    "heldout_renamed_file_among_csvs",
    "heldout_digit_strings_sum_delta",
    "heldout_ambiguous_status_junction",
    "heldout_column_dropped_unrelated_added",
    "heldout_renamed_folder_twin_candidates",
    "heldout_currency_suffix_some_rows",
)


def all_cases(include_heldout: bool = False) -> list[Case]:
    names = CASE_MODULES + (HELDOUT_MODULES if include_heldout else ())
    return [importlib.import_module(f"heal_cases.{name}").CASE for name in names]


__all__ = ["CASE_MODULES", "HELDOUT_MODULES", "Case", "all_cases"]
