# earthkeep: two commands on a fresh machine.
#   make run   create .venv, install, migrate, serve on embedded defaults (SQLite + local files, 127.0.0.1:8000)
#   make test  install test dependencies (and missing servers), run the whole suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# numba compiles the zonal-statistics kernel once per install (cached on disk), so that no job waits for it
WARM_UP = @echo "compiling the zonal-statistics kernel (numba, once per install: about 10 s)"; \
	$(BIN)/python -c "from earthkeep.raster.zonal import warm_up; warm_up()"
PYTEST_WORKERS ?= 2   # test processes (pytest-xdist; a test file stays in one); 0 runs the suite in this process

.PHONY: run test demo install install-test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	$(WARM_UP)
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	$(WARM_UP)
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	bash .ci/install-servers.sh

run: install
	mkdir -p data
	$(BIN)/earthkeep db upgrade
	$(BIN)/earthkeep serve

demo: install   # every domain against the testbed emulators, offline; Ctrl-C stops
	$(BIN)/earthkeep demo

test: install-test
	$(BIN)/pytest -m "not internet" -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check src tests bench

bench: install-test   # the main benchmarks, about 20 minutes; each script also runs alone (soak, stac, dashboard, nightlights: see docs/benchmarks.md)
	for b in jobs transfer gfs ingest query mirror ckan allocate zonal cluster; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache
