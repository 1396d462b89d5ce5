# flm: `make demo` runs the whole chain on built-in synthetic data; `make test` runs the checks.
# Both create .venv on first use and install what they need (Python >= 3.9 with venv; 3.11 tested).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
export TF_USE_LEGACY_KERAS = 1
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: venv test lint pytest demo demo-smoke clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train,runtime,dev]"
	@touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

pytest: venv
	$(VENV)/bin/pytest -q

test: lint pytest

demo: venv
	$(PY) scripts/demo.py $(if $(DATA),--data $(DATA)) $(if $(RUN),--run $(RUN)) $(if $(WIDTH),--width $(WIDTH))

demo-smoke: venv
	$(PY) scripts/demo.py --smoke --run runs/demo-smoke

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
