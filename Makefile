# The course's commands (see README.md). Each one sets up .venv/ first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SMOKE := COURSE_MODE=smoke COURSE_OFFLINE=1
# Where the published Tutorial 5 files are beside the checkout, notebook 03 loads them from there
# (a file:// mirror needs no network), so that its published-checkpoint path is tested too.
TUTORIAL5_MIRROR := $(wildcard $(abspath ../shared/reference/uvadlc-tutorial5))
NOTEBOOK_ENV := $(if $(TUTORIAL5_MIRROR),COURSE_TUTORIAL5_URL=file://$(TUTORIAL5_MIRROR)/)

.PHONY: setup test unit-tests in-process-tests notebook-and-process-tests notebook-tests course site address lab bench faults reference gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

# The tests run in two single-threaded streams side by side: the unit tests that stay in their
# process, and the notebooks followed by the tests that start processes or a browser (-m slow).
# The tests' small models train hardly faster on two threads, so two streams use both cores
# better (README, "Measured"), and the two take about as long. Each stream's output is printed
# when it ends; `make unit-tests` runs every unit test alone. It must leave the checkout as it
# found it (nbval never writes the notebooks' outputs back).
test: setup
	@echo "two streams of tests run side by side; each one's output follows when it ends"
	@before="$$(git status --porcelain 2>/dev/null)"; \
	$(MAKE) --no-print-directory -j2 --output-sync=target in-process-tests \
		notebook-and-process-tests || exit 1; \
	after="$$(git status --porcelain 2>/dev/null)"; \
	if [ "$$before" != "$$after" ]; then \
		echo "make test changed the checkout; git status before:"; echo "$$before"; \
		echo "and after:"; echo "$$after"; exit 1; fi

unit-tests: setup
	$(SMOKE) OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/ --durations=5

in-process-tests: setup
	$(SMOKE) OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/ -m "not slow" --durations=5

notebook-and-process-tests: notebook-tests
	$(SMOKE) OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/ -m slow --durations=5

notebook-tests: setup
	$(SMOKE) OMP_NUM_THREADS=1 $(NOTEBOOK_ENV) $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 notebooks/ --durations=5

# Without a GPU the course runs in CPU mode (COURSE_MODE=cpu), and writes each notebook that ran
# cleanly back into notebooks/ with its outputs (the committed outputs come from this). Notebook
# 03 loads the published Tutorial 5 files from the mirror beside the checkout where there is one,
# as make test does.
course: setup
	$(NOTEBOOK_ENV) $(BIN)/python scripts/run_course.py

# The course website, from the executed notebooks (nothing re-runs): build/site/index.html.
site: setup
	$(BIN)/python scripts/build_site.py

# After setting [tool.course] repository in pyproject.toml: the Colab badges and REPO lines.
address: setup
	$(BIN)/python scripts/set_address.py

lab: setup
	$(BIN)/jupyter lab notebooks/

reference: setup
	COURSE_MODE=full $(BIN)/python scripts/reference.py $(if $(ONLY),--only $(ONLY))

gpu-check: setup
	$(BIN)/python scripts/gpu_check.py

bench: setup
	for script in benchmarks/*.py; do COURSE_MODE=full $(BIN)/python $$script || exit 1; done
	$(BIN)/python benchmarks/memory_layout.py --cpu-mode
	$(BIN)/python benchmarks/densenet_shared_statistics.py --cpu-mode

# Kills, full disks, damaged and hostile files, two writers, bad arguments: does anything lose, mix
# or hide work? Each case runs in a temporary folder of its own (README, "Commands").
faults: setup
	$(BIN)/python scripts/fault_injection.py

clean:
	rm -rf build saved_models/smoke
