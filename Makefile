# phizoo developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# The CPU build of torch 2.13.0 lies on this machine's disk; an unpinned torch pulls a CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: venv install install-fast demo test docs clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[test,data,xtb,docs]"
	touch $@

install: $(VENV)/.installed

# torch_cluster has no wheels: it compiles against the installed torch (~9 min the first
# time; pip caches the wheel afterwards). phizoo uses it automatically when importable.
$(VENV)/.installed-fast: $(VENV)/.installed
	$(PIP) install -q --no-build-isolation torch_cluster
	touch $@

install-fast: $(VENV)/.installed-fast

demo: install
	$(PY) -m phizoo.demo

test: install-fast
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q tests
	$(MAKE) --no-print-directory docs

# The documentation site (docs/, mkdocs.yml) into site/. --strict: a broken link, a missing
# snippet or an unresolvable API reference fails the build (and with it `make test`).
MKDOCS_ENV := DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 OMP_NUM_THREADS=1
docs: install
	$(MKDOCS_ENV) $(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) build site *.egg-info
