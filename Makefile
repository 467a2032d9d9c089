# The two commands of the README.  Both work from a fresh clone on Debian
# bookworm as root: they install what is missing, build the C parts, and run.
PYTHON ?= python3
VENV   ?= .venv
VPY     = $(VENV)/bin/python
STAMPS  = .stamps

.PHONY: test demo deps venv native clean bench

test: deps venv native
	$(VPY) -m pytest tests

demo: deps venv native
	$(VENV)/bin/xen-remus-compat demo

bench: deps venv native
	$(VPY) bench/config.py
	$(VPY) bench/checkpoint.py
	$(VPY) bench/netbuf.py

deps: $(STAMPS)/deps
$(STAMPS)/deps: scripts/install-deps.sh
	bash scripts/install-deps.sh
	@mkdir -p $(STAMPS) && touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: setup.cfg setup.py pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	$(VPY) -m xen_remus_compat._xenalias   # legacy import names (see docs/decisions.md)
	@mkdir -p $(STAMPS) && touch $@

native: venv
	$(MAKE) -C lowlevel
	$(VPY) setup.py -q build_ext --inplace

clean:
	rm -rf $(STAMPS) build
	$(MAKE) -C lowlevel clean
