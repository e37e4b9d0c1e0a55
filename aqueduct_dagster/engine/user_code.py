"""Python code the Blueprint's author wrote, imported from the Blueprint's folder.

UDFs (`udf_registry`), custom Assert rules (`fn:`) and custom Ingress data sources (`class:`)
name a module beside the Blueprint (or anything importable). The module is re-read on every
load: a long-lived code server runs the file as it is now, not as first imported. It is also
shipped to the workers *by value*: a worker (or a Spark Connect server) need not have the
Blueprint's folder on its path. A patch may never add or change such a reference: the patch's
effect (healing/effect.py) counts each one as code, and a person must make that change.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from aqueduct_dagster.blueprint.suggest import did_you_mean


class UserCodeNotFound(LookupError):
    """The module or the name it should hold cannot be found; `hint` says where to look."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def blueprint_folder(blueprint_file: str | None) -> str | None:
    """The folder of a Blueprint file; None for one compiled from text (`<string>`)."""
    if not blueprint_file or blueprint_file.startswith("<"):
        return None
    return str(Path(blueprint_file).expanduser().resolve().parent)


def import_user_module(name: str, folder: str | None) -> ModuleType:
    """Module `name`, looked up in `folder` first; the file as it is now."""
    from pyspark import cloudpickle

    if folder and folder not in sys.path:
        sys.path.insert(0, folder)  # `module: logic` means logic.py beside the Blueprint
    try:
        loaded = sys.modules.get(name)
        module = importlib.reload(loaded) if loaded else importlib.import_module(name)
    except ImportError as error:
        raise UserCodeNotFound(
            f"cannot import module '{name}': {error}",
            "put the module beside the Blueprint or on PYTHONPATH",
        ) from None
    # By value: workers (and a Connect server) need not import the user's module.
    cloudpickle.register_pickle_by_value(module)
    return module


def member(module: ModuleType, name: str) -> Any:
    """`module.name`, or UserCodeNotFound suggesting the closest public name."""
    found = getattr(module, name, None)
    if found is None:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise UserCodeNotFound(
            f"module '{module.__name__}' has no '{name}'{did_you_mean(name, names)}",
            f"define {name} in {getattr(module, '__file__', None) or module.__name__}",
        )
    return found


def load_reference(reference: str, folder: str | None) -> Any:
    """The object a dotted reference names: `quality.check_orders` is `check_orders` of
    quality.py beside the Blueprint (or of an importable module `quality`)."""
    module_name, _, name = reference.strip().rpartition(".")
    if not module_name or not name:
        raise UserCodeNotFound(
            f"'{reference}' does not name a module and a member of it",
            "write it as <module>.<name>, e.g. quality.check_orders for check_orders in quality.py",
        )
    return member(import_user_module(module_name, folder), name)
