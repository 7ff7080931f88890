# Two entry points: `make demo` and `make test` (`make docs` serves the documentation site).
# All build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs venv test-venv js clean

$(BIN)/ruralcov: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# protomaps-leaflet and the PMTiles reader, which the province map of a large run loads
# (maps/tiles/): npm ci installs the versions of js/package-lock.json into js/node_modules
# (never committed); nodejs and npm come from Debian when missing.
js/node_modules/.package-lock.json: js/package.json js/package-lock.json
	command -v npm >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm)
	cd js && npm ci --no-audit --no-fund

js: js/node_modules/.package-lock.json

venv: $(BIN)/ruralcov js

demo: venv
	$(BIN)/ruralcov demo --force  # replaces an earlier demo run folder, nothing else

$(VENV)/.test-deps: $(BIN)/ruralcov js
	$(BIN)/python -m pip install --quiet -e '.[test,dask,docs,postgis,national]'
	# the map tests drive Debian's chromium (never a browser downloaded by Playwright)
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	# the PostGIS tests start a throwaway PostgreSQL 15 + PostGIS 3 server (tests/pgserver.py)
	test -f /usr/share/postgresql/15/extension/postgis.control || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15-postgis-3)
	touch $@

test-venv: $(VENV)/.test-deps

# -P: the working folder is not put on sys.path, so `coverage/` (the source root) is never
# importable as a `coverage` package; pytest collects tests/ and the package's doctests
# (testpaths and --doctest-modules in pyproject.toml).
# The site is built strictly: a broken link or a page outside the navigation fails the test.
test: test-venv
	# Chinese names in the static maps and the map screenshots need a CJK font (checked on
	# every run: a venv made before this line was added gets it too)
	test -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y fonts-noto-cjk)
	$(BIN)/python -P -m pytest
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: test-venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) out site js/node_modules
