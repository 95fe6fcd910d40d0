# perception: `make demo` runs the main job on built-in data, `make test` runs the suite.
# Both install first (idempotent: a second `make install` takes seconds).
PY := .venv/bin/python
export PERCEPTION_WHEELHOUSE ?= $(if $(wildcard ../shared/wheelhouse),$(abspath ../shared/wheelhouse),)

.PHONY: install demo test test-fast bench bench-export gpu-check clean

install:
	bash tools/install.sh

demo: install
	$(PY) tools/demo.py

# 2 pytest-xdist workers, one test file each at a time (module fixtures are built once); the cores are
# shared between them (tests/conftest.py). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# the fast loop while you work: every test not marked `slow` (training runs, exports, multi-process
# runs; tests/conftest.py marks the users of the trained / exported fixtures). CI runs `make test`.
test-fast: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests

bench: install
	$(PY) tools/benchmark.py --preset 6b-block --size 504 --dtype fp32 bf16 --backend math sdpa

bench-export: install
	$(PY) tools/benchmark_export.py

gpu-check: install
	$(PY) tools/gpu_check.py

clean:
	rm -rf work_dirs .pytest_cache
