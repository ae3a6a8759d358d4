# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; GPU users install their own torch first (README, "GPU").
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bids-examples benchmarks clean

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	rm -rf demo_out/group
	$(VENV)/bin/qsmflow bids_examples demo_out participant -w demo_work --nprocs 2 --omp-nthreads 2
	$(VENV)/bin/qsmflow bids_examples demo_out group --group-by group

lint: $(STAMP)
	$(VENV)/bin/ruff check qsmflow tests benchmarks bids_examples

bids-examples: $(STAMP)
	$(PY) bids_examples/make_bids_examples.py

benchmarks: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf demo_out demo_work .pytest_cache
