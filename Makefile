# midiformer — every command a user needs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Where to look for a CUDA build, e.g. TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cu124
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install train prepare test test-all lint bench-prep bench-train bench-generate bench-scale bench-quality paper-table clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	# compat: the repo root on sys.path, so that Hydra finds hydra_plugins/midiformer_launchers (a namespace
	# package, which a strict editable install hides from Hydra's plugin scan)
	$(PY) -m pip install -q -e ".[dev,bench]" --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP) ## create .venv and install midiformer (editable) with pinned dependencies

prepare: $(STAMP) ## convert and prepare the built-in Bach chorales
	$(PY) -m midiformer.prepare

train: $(STAMP) ## the main job: prepare data=bach and train the small model (18-22 min on 2 cores)
	$(PY) -m midiformer.train $(ARGS)

test: $(STAMP) ## the fast inner loop: every test but the slow ones (-m "not slow"; a few minutes on 2 cores)
	$(PY) -m pytest tests -m "not slow" $(ARGS)

test-all: $(STAMP) ## every test, the slow ones too (subprocess training, torchrun, submitit, kill -9, search workers)
	$(PY) -m pytest tests $(ARGS)

lint: $(STAMP) ## ruff (configured in pyproject.toml)
	$(VENV)/bin/ruff check midiformer tests benchmarks experiments

bench-prep: $(STAMP) ## corpus preparation speed against MidiTok REMI
	$(PY) benchmarks/bench_prep.py $(ARGS)

bench-train: $(STAMP) ## training events/s against a plain one-token GPT
	$(PY) benchmarks/bench_train.py $(ARGS)

bench-generate: $(STAMP) ## generation events/s with and without the KV cache
	$(PY) benchmarks/bench_generate.py $(ARGS)

bench-scale: $(STAMP) ## prepare, start-up, memory and evaluation at N/10 and N files (ARGS="--files 2000")
	$(PY) benchmarks/bench_scale.py $(ARGS)

bench-quality: $(STAMP) ## held-out bits/note and bits/second against MidiTok REMI and MIDILike + a plain GPT (6 trainings, three rounds of two on 2 cores)
	$(PY) benchmarks/bench_quality.py $(ARGS)

paper-table: $(STAMP) ## every claim of the seed in its own regime -> experiments/paper_table/RESULTS.md + a PNG per claim (one seed: 93 min of one process on 2 busy cores, docs/paper-table.md; nohup ... &)
	$(PY) experiments/paper_table/run.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
