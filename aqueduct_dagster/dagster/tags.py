"""Run tags the framework sets and reads (sensors find a run's Blueprint through them)."""

BLUEPRINT_TAG = "aqueduct/blueprint"
BLUEPRINT_PATH_TAG = "aqueduct/blueprint_path"
HEAL_TAG = "aqueduct/heal_of"
