# The course's two commands: `make book` builds the whole Jupyter Book, `make test` runs every test.
# Both create (once) and reuse a virtual environment in .venv with the pinned requirements.
#
# MICROGPT_DATA: a folder holding the datasets (names.txt, ...); without it they are downloaded.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ifdef MICROGPT_DATA
export MICROGPT_DATA := $(abspath $(MICROGPT_DATA))
endif

.PHONY: build test book clean
.DEFAULT_GOAL := test

$(BIN)/.installed: requirements.txt pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3
	touch $@

# Compile fastops in place (again whenever a .pyx changes).
fastops/.built: $(BIN)/.installed setup.py $(wildcard fastops/*.pyx fastops/*.pxd)
	$(BIN)/python setup.py build_ext --inplace
	touch $@

build: fastops/.built

# Every test, and every chapter notebook run top to bottom in a fresh kernel, in short (smoke) mode.
test: build
	MICROGPT_SMOKE=1 $(BIN)/python -m pytest tests chapters --nbmake --nbmake-timeout=900 -p no:cacheprovider

# The whole book, every notebook executed in full; any warning or failing cell fails the build.
book: build
	$(BIN)/jupyter-book build --all -W -n --keep-going .

clean:
	rm -rf _build build fastops/*.c fastops/*.so fastops/*.html fastops/.built
