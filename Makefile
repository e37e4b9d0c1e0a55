# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtualenv (pinned by constraints.txt) and fetch the JVM jars (Maven) when missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export SPARK_LOCAL_IP ?= 127.0.0.1
export DAGSTER_HOME   := $(CURDIR)/.dagster_home
export PYSPARK_PYTHON := $(CURDIR)/$(PY)

.PHONY: setup venv jars demo test test-fast lint dev validate bench clean

setup: venv jars

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# pyspark ships as a large sdist: the constraints file keeps pip to one build of it.
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

# The pom ships in the package; `aqueduct jars fetch` resolves it with Maven (as users do),
# here into the checkout's .jars/, which the engine prefers over the user cache.
jars: .jars/.fetched
.jars/.fetched: aqueduct_dagster/jvm/pom.xml | venv
	$(VENV)/bin/aqueduct jars fetch --dest .jars
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	bash scripts/demo.sh

test: setup
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .

test-fast: setup
	$(PY) -m pytest -m "not e2e"

# After `make demo`, serves the demo's Blueprints, state and patch queue (.aqueduct/demo.env),
# with the reload URL set so an approved patch shows up in the UI at once. Warm Spark beside
# it: the managed Spark Connect server (restarted by its supervisor if its JVM dies) serves
# every run and heal sandbox, and is stopped when dagster dev stops; if it cannot start,
# runs use a classic session and say so.
dev: setup $(DAGSTER_HOME)/dagster.yaml
	@if [ -f .aqueduct/demo.env ]; then echo "serving the demo's state (.aqueduct/demo.env; make clean forgets it)"; fi
	set -a; [ ! -f .aqueduct/demo.env ] || . ./.aqueduct/demo.env; set +a; \
	$(VENV)/bin/aqueduct spark up || echo "warm Spark did not start: runs use a classic Spark session"; \
	trap 'exit 130' INT TERM; trap '$(VENV)/bin/aqueduct spark down' EXIT; \
	AQUEDUCT_DAGSTER_URL=$${AQUEDUCT_DAGSTER_URL:-http://127.0.0.1:3000} $(VENV)/bin/dagster dev -w workspace.yaml

validate: setup
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

# Not a test: the framework against hand-written PySpark (see the README, "Benchmarks").
# Results go to bench/results/; e.g. make bench BENCH_ARGS="--sizes tiny --warm".
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf data .aqueduct spark-warehouse $(DAGSTER_HOME)/storage $(DAGSTER_HOME)/history $(DAGSTER_HOME)/logs $(DAGSTER_HOME)/schedules
