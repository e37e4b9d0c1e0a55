"""Self-healing, declarative Spark pipelines as Dagster software-defined assets."""

__version__ = "0.1.0"
