# The course's two commands: `make book` builds the whole Jupyter Book, `make test` runs every test.
# Both create (once) and reuse a virtual environment in .venv with the pinned requirements.
#
# MICROGPT_DATA: a folder holding the datasets (names.txt, ...); without it they are downloaded.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ifdef MICROGPT_DATA
override MICROGPT_DATA := $(abspath $(MICROGPT_DATA))
export MICROGPT_DATA
endif

.PHONY: build test book lab clean vendor
.DEFAULT_GOAL := test

$(BIN)/.installed: requirements.txt pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3
	touch $@

# Compile fastops in place (again whenever a .pyx, .pxi or C header changes).
fastops/.built: $(BIN)/.installed setup.py $(wildcard fastops/*.pyx fastops/*.pxd fastops/*.pxi fastops/*.h)
	$(BIN)/python setup.py build_ext --inplace -j 2
	touch $@

build: fastops/.built

# The book's JavaScript (require.js, the widget manager, MathJax 3) from pinned npm packages,
# so the pages need no CDN (book/vendor/vendor.py says how). Needs npm: where it is missing and
# we are root on Debian (CI), it is installed with apt; otherwise this stops and says so.
VENDORED := book/vendor/html/vendor/VENDORED.json
$(VENDORED): book/vendor/vendor.json book/vendor/vendor.py
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "npm not found: installing Debian's nodejs and npm"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	  else \
	    echo "ERROR: npm is needed once to vendor the book's JavaScript; install Node.js and npm" \
	         "(Debian: sudo apt-get install nodejs npm) and run make again." >&2; exit 1; \
	  fi; }
	$(PYTHON) book/vendor/vendor.py
	touch $@

vendor: $(VENDORED)

# Every test, and every chapter notebook run top to bottom in a fresh kernel, in short (smoke) mode;
# tests/test_book_browser.py also builds the book in short mode and checks it in headless Chromium.
test: build vendor
	MICROGPT_SMOKE=1 $(BIN)/python -m pytest --nbmake --nbmake-timeout=900 -p no:cacheprovider

# The whole book, every notebook executed in full; any warning or failing cell fails the build.
book: build vendor
	$(BIN)/jupyter-book build --all -W -n --keep-going .

# Jupyter Lab on the chapters, in the course's environment (MICROGPT_SMOKE=1 make lab: short runs).
lab: build
	cd chapters && PYTHONPATH=$(CURDIR) ../$(BIN)/jupyter lab

clean:
	rm -rf _build build book/vendor/html fastops/*.c fastops/*.so fastops/*.html fastops/.built
