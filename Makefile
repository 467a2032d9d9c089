# The two commands of the README.  Both work from a fresh clone on Debian
# bookworm as root: they install what is missing, build the C parts, and run.
PYTHON ?= python3
VENV   ?= .venv
VPY     = $(VENV)/bin/python
STAMPS  = .stamps

.PHONY: test demo deps venv native clean bench wheel deb completions

test: deps venv native
	$(VPY) -m pytest tests

demo: deps venv native
	$(VENV)/bin/xen-remus-compat demo

bench: deps venv native
	$(VPY) bench/config.py
	$(VPY) bench/checkpoint.py
	$(VPY) bench/netbuf.py
	$(VPY) bench/ackcommit.py
	$(VPY) bench/suspend_paths.py

# The packages, from the work tree into build/pkg (docs/decisions.md,
# "Packaging"): a wheel, and the Debian package with its lintian report.
wheel: deps venv
	PYTHON=$(VPY) bash scripts/build-package.sh wheel

deb: deps
	bash scripts/build-package.sh deb

# completions/ is generated from the parsers (tests/unit/test_completion.py
# checks it is up to date)
completions: venv
	$(VENV)/bin/xen-remus-compat completion bash -o completions

deps: $(STAMPS)/deps
$(STAMPS)/deps: scripts/install-deps.sh
	bash scripts/install-deps.sh
	@mkdir -p $(STAMPS) && touch $@

venv: $(STAMPS)/venv
# The stamp depends on the venv itself (its pyvenv.cfg, written when the
# venv is made): a .stamps left from a .venv since deleted is out of date.
$(STAMPS)/venv: setup.cfg setup.py pyproject.toml $(VENV)/pyvenv.cfg
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	$(VPY) -m xen_remus_compat._xenalias   # legacy import names (see docs/decisions.md)
	@mkdir -p $(STAMPS) && touch $@

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

native: venv
	$(MAKE) -C lowlevel
	$(VPY) setup.py -q build_ext --inplace

clean:
	rm -rf $(STAMPS) build
	$(MAKE) -C lowlevel clean
