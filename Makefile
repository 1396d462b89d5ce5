# flm: `make demo` runs the whole chain on built-in synthetic data; `make test` runs the checks.
# Both create .venv on first use and install what they need (Python >= 3.9 with venv; 3.11 tested).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
# pytest workers: two help when another job shares the 2 cores (one process got ~1/3 of the CPU
# beside a 2-thread training, two get ~1/2: pytest 21 min under that load against ~30 min on one
# worker; idle both take ~15 min); a test file stays on one worker (--dist loadfile) so its module
# fixtures are built once.
PYTEST_WORKERS ?= 2
export TF_USE_LEGACY_KERAS = 1
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: venv test lint pytest demo demo-smoke clean xir vai-q

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train,runtime,dev]"
	@touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

pytest: venv
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: lint pytest

demo: venv
	$(PY) scripts/demo.py $(if $(DATA),--data $(DATA)) $(if $(RUN),--run $(RUN)) $(if $(WIDTH),--width $(WIDTH))

demo-smoke: venv
	$(PY) scripts/demo.py --smoke --run runs/demo-smoke

# XIR (reads .xmodel files) + its Python module from ../shared/vendor, or VITIS_AI_SRC=<Vitis AI checkout>;
# cached in ~/.cache/flm/xir-<hash>/, imported by the venv through a .pth file (scripts/build_xir.sh)
xir: venv
	XIR_PYTHON=$(PY) scripts/build_xir.sh

# vai_q_tensorflow2 3.5 (the Vitis AI quantizer) from ../shared/vendor, or VITIS_AI_SRC=<Vitis AI checkout>,
# into its own venv (TF 2.12) cached in ~/.cache/flm/vai_q-<hash>/; `flm vitis quantize` then runs in it
vai-q:
	$(PYTHON) -m vitis.vai_q_env build

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
