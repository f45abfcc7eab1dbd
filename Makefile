# make demo  - the main job against a local Pebble: register with EAB, obtain,
#              grant, prove access, renew, prove again
# make test  - every test (unit and certbot-driven end-to-end), and
#              make test-systemd where a real systemd can boot
# make test-systemd - end-to-end under a real systemd booted in namespaces:
#              every unit action, the settle window, Debian's certbot.timer
#              with the .deb through tinyproxy, EPEL's certbot-renew
# make test-py36 - every test again on certbot 1.22 / Python 3.6 (EL 8)
# make compat - the core end-to-end scenario on every certbot a distribution
#              ships (DESIGN §9), one venv per pair plus Debian 12's own certbot
#              with the .deb; COMPAT_ARGS='--only 5.8' picks pairs
# make deb   - dist/python3-certbot-wwu_VERSION_all.deb (dh-python/pybuild,
#              PEP 517) with its man page, and the source package in build/deb
# make lintian - lintian on the source and binary package: fails on any
#              error or warning
# make autopkgtest - the DEP-8 tests (debian/tests) against the installed .deb
#              and Debian's certbot, with autopkgtest's null runner
# make pydist - the sdist and the wheel (python -m build) in dist/
# make rpm   - dist/python3-certbot-wwu-VERSION-1.noarch.rpm from
#              rpm/certbot-wwu.spec with Debian's rpmbuild, and its file list
# make rpm-check - the spec's EPEL 8 branch builds too, and the RPM's payload
#              passes the core scenario with Debian's /usr/bin/certbot
# make pip-check - pip install . / -e . / python -m build on Python 3.6 and
#              3.11-3.13, without deprecation notices
# make dist  - sdist, wheel, .deb and .rpm in dist/ with SHA256SUMS
# make docs  - the Sphinx docs (HTML) and the man page, warnings are errors
# make faults - the long fault suite: hundreds of kills, long property runs
# make bench - what certbot-wwu costs against certbot alone and against the
#              manual recipe (benchmarks/RESULTS.md has one run)
# make test-services - every service profile (--wwu-acl-service) against its
#              real Debian server, proven with the protocol's own client
# make cluster-test - real peers in network namespaces with sshd (shared
#              account, push and remote deploy, a peer down and caught up)
PYTHON ?= python3
VENV   ?= .venv
PY36   ?= $(shell ls -d $$(pyenv root 2>/dev/null)/versions/3.6*/bin/python3.6 /usr/bin/python3.6 2>/dev/null | head -n 1)
VENV36 ?= .venvs/certbot-1.22-py3.6

REQS   = certbot pylibacl pytest hypothesis sphinx setuptools wheel
# certbot 1.x needs these pins on a modern pip (DESIGN §9)
REQS36 = certbot==1.22.0 acme==1.22.0 josepy==1.13.0 pyOpenSSL==23.1.1 \
         cryptography==40.0.2 'pylibacl<0.7' pytest hypothesis setuptools wheel

.PHONY: setup test test-py36 demo clean docs faults cluster-test bench test-systemd test-services

setup:
	scripts/setup-host
	scripts/setup-monitoring-test
	scripts/make-venv $(VENV) $(PYTHON) $(REQS)

test: setup
	$(VENV)/bin/python -m pytest --ignore=tests/systemd --ignore=tests/services
	@if [ -n "$${CI:-}" ] || $(VENV)/bin/python -c 'import sys; from tests.support.realsystemd import cannot_boot; sys.exit(1 if cannot_boot() else 0)'; \
	then $(MAKE) test-systemd; \
	else echo "test: no real systemd can boot here; make test-systemd says why"; fi

# tests/systemd: a real systemd booted in namespaces (docs/testing.rst), with
# Debian's certbot, the .deb installed inside it and tinyproxy
test-systemd: setup deb
	scripts/setup-systemd-test
	$(VENV)/bin/python -m pytest tests/systemd

test-py36: setup
	@test -n "$(PY36)" || { echo "test-py36: no Python 3.6 interpreter found" >&2; exit 1; }
	PIP_SPEC='pip<22' scripts/make-venv $(VENV36) $(PY36) $(REQS36)
	$(VENV36)/bin/python -m pytest --ignore=tests/services

demo: setup
	$(VENV)/bin/python scripts/demo.py

docs: setup
	$(VENV)/bin/sphinx-build -W -q -b html docs docs/_build/html
	$(VENV)/bin/sphinx-build -W -q -b man docs docs/_build/man
	@echo "docs: docs/_build/html/index.html, docs/_build/man/certbot-wwu.1"

bench: setup
	$(VENV)/bin/python benchmarks/run.py

# tests/services: every service profile against its real Debian server
# (installed with a policy-rc.d that keeps it from starting system-wide)
test-services: setup
	scripts/setup-services-test
	$(VENV)/bin/python -m pytest tests/services

cluster-test: setup
	scripts/setup-cluster-test
	$(VENV)/bin/python -m pytest tests/cluster

faults: setup
	WWU_FAULT_ITERATIONS=300 WWU_KILL_ITERATIONS=300 HYPOTHESIS_PROFILE=long \
	    $(VENV)/bin/python -m pytest -s tests/faults tests/test_copies_kill.py

clean:
	rm -rf $(VENV) .venvs build dist *.egg-info

.PHONY: compat deb

DEB_BUILD = build/deb

compat: deb
	scripts/setup-host
	$(PYTHON) scripts/compat.py $(COMPAT_ARGS)

# Built from a copy of the tree (no venvs, no build leftovers in the work tree);
# a plain PATH so that pybuild uses Debian's Pythons, not pyenv's shims.
deb:
	scripts/setup-deb
	rm -rf $(DEB_BUILD)
	mkdir -p $(DEB_BUILD)/src dist
	tar -c --exclude-vcs --exclude=./.venv --exclude=./.venvs --exclude=./build \
	    --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
	    --exclude=.pytest_cache --exclude=.hypothesis --exclude=./docs/_build \
	    . | tar -x -C $(DEB_BUILD)/src
	cd $(DEB_BUILD)/src && env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	    dpkg-buildpackage -us -uc > ../build.log 2>&1 \
	    || { tail -n 40 ../build.log; echo "deb: failed, see $(DEB_BUILD)/build.log" >&2; exit 1; }
	rm -f dist/python3-certbot-wwu_*.deb
	cp $(DEB_BUILD)/python3-certbot-wwu_*_all.deb dist/
	@ls -l dist/python3-certbot-wwu_*_all.deb

# Packaging checks (docs/packaging.rst). The version comes from
# certbot_wwu/__init__.py, the single source.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' certbot_wwu/__init__.py)
SDIST    = dist/certbot_wwu-$(VERSION).tar.gz
WHEEL    = dist/certbot_wwu-$(VERSION)-py3-none-any.whl
DEB      = dist/python3-certbot-wwu_$(VERSION)_all.deb
RPM      = dist/python3-certbot-wwu-$(VERSION)-1.noarch.rpm

.PHONY: lintian autopkgtest pydist rpm rpm-check pip-check dist

lintian: deb
	scripts/setup-deb lintian
	lintian --fail-on error,warning --display-info --pedantic \
	    $(DEB_BUILD)/certbot-wwu_$(VERSION)_$$(dpkg --print-architecture).changes

# -B: test the .deb built by make deb, do not build the source again.
# autopkgtest exits 0 only when every test passed (2: one was skipped). An
# installed python3-certbot-wwu of the same version (make compat) would
# satisfy the test's dependency: remove it so that this .deb is installed.
autopkgtest: deb
	scripts/setup-deb autopkgtest
	if dpkg-query -W -f='$${Status}' python3-certbot-wwu 2>/dev/null | grep -q "ok installed"; then \
	    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq python3-certbot-wwu >/dev/null; fi
	autopkgtest -B $(DEB_BUILD)/certbot-wwu_$(VERSION).dsc $(DEB) -- null

pydist:
	scripts/build-pydist dist

rpm: pydist
	scripts/build-rpm $(SDIST) dist

rpm-check: rpm
	scripts/build-rpm --el8 $(SDIST) > build/rpm-el8.log \
	    || { cat build/rpm-el8.log; exit 1; }
	@echo "rpm-check: the spec's EPEL 8 branch builds (build/rpm-el8.log)"
	scripts/rpm-check $(RPM)

pip-check:
	scripts/pip-check

dist: pydist deb rpm
	cd dist && sha256sum $(notdir $(SDIST) $(WHEEL) $(DEB) $(RPM)) > SHA256SUMS
	@cat dist/SHA256SUMS
