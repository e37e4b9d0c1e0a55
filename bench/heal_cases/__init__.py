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


def all_cases() -> list[Case]:
    return [importlib.import_module(f"heal_cases.{name}").CASE for name in CASE_MODULES]


__all__ = ["CASE_MODULES", "Case", "all_cases"]
