# Two commands on a fresh machine: `make demo` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
ML_VENV := .venv-ml
LS_VENV := .venv-ls
UV := $(VENV)/bin/uv
UV_VERSION := 0.12.3
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)/include

.PHONY: all env ml-env ls-env demo test test-main lint format bench-images bench-upload bench-model bench-training bench-parse bench-device mwaa-bundle clean
# The older MWAA versions teams run: an environment, a bundle and a test run each (see README).
MWAA_OLDER := 3.0.6 2.11.0
.PHONY: $(addprefix mwaa-env-,$(MWAA_OLDER)) $(addprefix mwaa-bundle-,$(MWAA_OLDER)) $(addprefix test-mwaa-,$(MWAA_OLDER)) test-mwaa-older

all: test

$(VENV)/.installed: requirements.txt requirements/airflow-dev.txt constraints/airflow-3.3.1-py3.12.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q uv==$(UV_VERSION)
	sed '/^--constraint/d' requirements.txt > $(VENV)/requirements-mwaa.txt
	# MWAA's numpy pin (2.5.1) needs Python 3.12: a local venv on an older Python takes its newest numpy.
	$(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
	  && cp constraints/airflow-3.3.1-py3.12.txt $(VENV)/constraints.txt \
	  || sed '/^numpy==/d' constraints/airflow-3.3.1-py3.12.txt > $(VENV)/constraints.txt
	$(UV) pip install -q --python $(VENV)/bin/python \
	  -c $(VENV)/constraints.txt \
	  -r $(VENV)/requirements-mwaa.txt -r requirements/airflow-dev.txt
	touch $@

$(ML_VENV)/.installed: requirements/ml-tools.txt $(VENV)/.installed
	test -x $(ML_VENV)/bin/python || $(UV) venv -q --python $(PYTHON) $(ML_VENV)
	$(UV) pip install -q --python $(ML_VENV)/bin/python -r requirements/ml-tools.txt
	touch $@

$(LS_VENV)/.installed: requirements/label-studio.txt $(VENV)/.installed
	test -x $(LS_VENV)/bin/python || $(UV) venv -q --python $(PYTHON) $(LS_VENV)
	$(UV) pip install -q --python $(LS_VENV)/bin/python -r requirements/label-studio.txt
	touch $@

# An older MWAA's Airflow environment: its constraints, its requirements file, and the test tools at
# the versions the 3.3.1 environment uses (the emulator is written against moto 5.2.5), so their
# pins (and moto's py-partiql-parser) are taken out of that version's constraints.
.venv-mwaa-%/.installed: requirements/mwaa/%.txt requirements/mwaa/dev-%.txt requirements/mwaa/dev-overrides.txt constraints/airflow-%-py3.12.txt $(VENV)/.installed
	test -x .venv-mwaa-$*/bin/python || $(UV) venv -q --python $(PYTHON) .venv-mwaa-$*
	sed '/^--constraint/d' requirements/mwaa/$*.txt > .venv-mwaa-$*/requirements-mwaa.txt
	grep -v -E '^(moto|pytest|hypothesis|py-partiql-parser)==' constraints/airflow-$*-py3.12.txt > .venv-mwaa-$*/constraints.txt
	$(UV) pip install -q --python .venv-mwaa-$*/bin/python -c .venv-mwaa-$*/constraints.txt \
	  -r .venv-mwaa-$*/requirements-mwaa.txt -r requirements/mwaa/dev-$*.txt -r requirements/mwaa/dev-overrides.txt
	touch $@

env: $(VENV)/.installed
ml-env: $(ML_VENV)/.installed
ls-env: $(LS_VENV)/.installed
$(addprefix mwaa-env-,$(MWAA_OLDER)): mwaa-env-%: .venv-mwaa-%/.installed

## Run the whole DAG on the embedded emulator and print its summary.
demo: env ml-env ls-env
	$(VENV)/bin/python scripts/demo.py $(DEMO_ARGS)

## The test suite: lint, the Airflow environment's tests, the ML tools environment's, then the DAG's
## tests and one end-to-end run under MWAA 3.0.6 and 2.11.0.
test: test-main test-mwaa-older

test-main: env ml-env ls-env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(ML_VENV)/bin/python -m pytest -c tests/ml_tools/pytest.ini tests/ml_tools $(PYTEST_ARGS)
	$(ML_VENV)/bin/python -m pytest -c tests/lambda/pytest.ini tests/lambda $(PYTEST_ARGS)
	$(ML_VENV)/bin/python -m pytest -c tests/deeplens_device/pytest.ini tests/deeplens_device $(PYTEST_ARGS)

# What depends on the Airflow version: the DAG, the operators, hooks and triggers, the bundle as MWAA
# lays it out, and one whole run on the emulator (the training branch, labelled in Label Studio).
MWAA_OLDER_TESTS := tests/dags tests/deeplens_pipeline/operators tests/deeplens_pipeline/triggers \
  tests/test_build_mwaa_bundle.py tests/e2e/test_dag_on_emulator.py \
  --deselect "tests/e2e/test_dag_on_emulator.py::test_whole_dag[tune-ground-truth]"
test-mwaa-older: $(addprefix test-mwaa-,$(MWAA_OLDER))
$(addprefix test-mwaa-,$(MWAA_OLDER)): test-mwaa-%: .venv-mwaa-%/.installed ml-env ls-env
	.venv-mwaa-$*/bin/python -m pytest $(MWAA_OLDER_TESTS) $(PYTEST_ARGS)

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## What to upload to MWAA: build/mwaa/{dags/,plugins.zip,requirements.txt}
mwaa-bundle:
	$(PYTHON) scripts/build_mwaa_bundle.py
## The same for MWAA 3.0.6 and 2.11.0: build/mwaa-<version>/
$(addprefix mwaa-bundle-,$(MWAA_OLDER)): mwaa-bundle-%:
	$(PYTHON) scripts/build_mwaa_bundle.py --airflow-version $*

## Benchmarks (not tests): each prints its figure against a baseline run in the same command.
bench-images: env
	$(VENV)/bin/python scripts/bench_images.py

bench-upload: env
	$(VENV)/bin/python scripts/bench_upload.py --install-awscli .venv-awscli

bench-model: ml-env
	$(ML_VENV)/bin/python scripts/bench_model_fix.py $(BENCH_ARGS)

bench-parse: env
	$(VENV)/bin/python scripts/bench_parse.py

bench-device: ml-env
	$(ML_VENV)/bin/python scripts/bench_device.py $(BENCH_ARGS)

bench-training: ml-env
	$(ML_VENV)/bin/python -m ml_tools.bench_training --image-shape 300 --max-seconds 240

clean:
	rm -rf $(VENV) $(ML_VENV) $(LS_VENV) $(addprefix .venv-mwaa-,$(MWAA_OLDER)) .venv-awscli .demo build .pytest_cache
