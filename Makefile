# Two environments that cannot share one resolver run (see DEVELOPERS.md):
#   .venv/runtime  components, CLI, pipelines, notebooks and their tests
#   .venv/serving  the KServe predictor and its tests
# Each is created on first use from its production lock (requirements/<env>.lock, all the images get)
# plus its test-tooling lock (requirements/<env>-dev.lock: pytest, nbclient, ipykernel, ruff), and is
# re-synced only when one of those locks, setup.cfg or pyproject.toml changes.
PYTHON ?= python3.11
RUNTIME := .venv/runtime
SERVING := .venv/serving
PRODML_HOME ?= $(CURDIR)/.prodml-demo
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: setup demo demo-loop test test-unit test-runtime test-serving test-images images lint compile bench bench-pipeline bench-serving bench-quality bench-monitor bench-scale lock clean

setup: $(RUNTIME)/.synced $(SERVING)/.synced

$(RUNTIME)/.synced $(SERVING)/.synced: %/.synced: setup.cfg pyproject.toml
	@test -x $*/bin/python || $(PYTHON) -m venv $*
	@echo "==> syncing $* from requirements/$(notdir $*).lock and $(notdir $*)-dev.lock (first run takes a few minutes)"
	@$*/bin/python -m pip install --quiet --quiet --no-deps -r requirements/$(notdir $*).lock \
		-r requirements/$(notdir $*)-dev.lock
	@$*/bin/python -m pip install --quiet --quiet --no-deps --no-build-isolation -e .
	@touch $@
$(RUNTIME)/.synced: requirements/runtime.lock requirements/runtime-dev.lock
$(SERVING)/.synced: requirements/serving.lock requirements/serving-dev.lock

demo: setup
	$(RUNTIME)/bin/prodml run training --data data/chicago_taxi/data.csv --label big_tipper \
		--model-name chicago-taxi --drop-columns tips --root $(PRODML_HOME)
	$(RUNTIME)/bin/prodml lineage --model-name chicago-taxi --root $(PRODML_HOME)
	$(RUNTIME)/bin/prodml serve --model-name chicago-taxi --root $(PRODML_HOME) --demo-requests data/chicago_taxi/data.csv

# The monitoring loop in under 5 minutes (pipelines/demo_loop.py): v1 trained on January-June trips and served
# with request logging; drifted July-December trips replayed over HTTP; late labels; prodml monitor retrains
# and pushes v2; the server rolls over while requests keep coming. Its own home: .prodml-demo-loop/ (emptied first).
demo-loop: setup
	$(RUNTIME)/bin/python -m prodml.pipelines.demo_loop --root $(CURDIR)/.prodml-demo-loop

test: setup test-runtime test-serving

# The fast subset (under 2 minutes): no pipeline runs, notebooks, MySQL server or served model.
# Tests over about 5 s carry the slow marker (tests/conftest.py lists the older ones).
UNIT := not slow and not e2e and not notebook and not mysql

test-unit: $(RUNTIME)/.synced $(SERVING)/.synced
	$(RUNTIME)/bin/python -m pytest -q -m "not serving and $(UNIT)" --ignore=tests/serving --ignore=tests/images
	$(SERVING)/bin/python -m pytest -q -m "serving and $(UNIT)" tests/serving

# Two pytest workers: most runtime tests wait on subprocesses and single-threaded Python, so the
# pipeline runs, notebooks and SIGKILL runs of one file overlap with another file's on the second
# core. A file's tests stay on one worker (--dist loadfile), so module fixtures run once.
test-runtime: $(RUNTIME)/.synced
	$(RUNTIME)/bin/python -m pytest -q -n 2 --dist loadfile -m "not serving" --ignore=tests/serving --ignore=tests/images

test-serving: $(SERVING)/.synced $(RUNTIME)/.synced
	$(SERVING)/bin/python -m pytest -q -m serving tests/serving

# The container images, built with podman (runc, configured by images/containers.conf). `make images`
# builds Dockerfile.runtime (targets runtime and infra-validate: the runtime image plus the serving
# environment, for infra_validate) and Dockerfile.serving on the official python base and tags them with the names the
# manifests use. `make test-images` (needs root, podman, runc, debootstrap; not part of `make test`)
# builds a stand-in for the base where no registry is reachable, builds the three images on it (tags end
# in -standin), runs the serving image as each ServingRuntime manifest starts it, one pipeline component
# inside the runtime image and infra_validate inside its image. pip inside the builds trusts IMAGE_CA_BUNDLE.
STANDIN_BASE := localhost/prodml-python-standin:3.11-bookworm
IMAGE_CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
IMAGE_BUILD := $(PYTHON) images/build.py $(if $(IMAGE_CA_BUNDLE),--ca-bundle $(IMAGE_CA_BUNDLE))
images test-images: export CONTAINERS_CONF ?= $(CURDIR)/images/containers.conf

images:
	$(IMAGE_BUILD)

test-images: setup
	images/standin-base.sh $(STANDIN_BASE)
	$(IMAGE_BUILD) --base $(STANDIN_BASE) --tag-suffix=-standin
	PRODML_TEST_IMAGE_SUFFIX=-standin $(SERVING)/bin/python -m pytest -q -m images tests/images/test_serving_image.py
	PRODML_TEST_IMAGE_SUFFIX=-standin $(RUNTIME)/bin/python -m pytest -q -m images tests/images/test_runtime_image.py \
		tests/images/test_infra_validate_image.py

lint: $(RUNTIME)/.synced
	$(RUNTIME)/bin/ruff check .

compile: $(RUNTIME)/.synced
	$(RUNTIME)/bin/prodml compile

bench: bench-pipeline bench-serving

bench-pipeline: $(RUNTIME)/.synced
	$(RUNTIME)/bin/python benchmarks/pipeline_overhead.py

bench-serving: setup
	$(SERVING)/bin/python benchmarks/serving_latency.py

# The default model vs scikit-learn's HistGradientBoosting on six datasets (benchmarks/results/model_quality.json).
bench-quality: $(RUNTIME)/.synced
	$(RUNTIME)/bin/python benchmarks/model_quality.py

# The monitor on 100k and 1M logged rows against TFDV's own statistics of the same rows, side by side
# (benchmarks/results/monitor.json); trains a model into /tmp/prodml-monitor-bench/home on first use.
bench-monitor: $(RUNTIME)/.synced
	$(RUNTIME)/bin/python benchmarks/monitor.py --json benchmarks/results/monitor.json

# The training pipeline at 100k and 1M resampled taxi rows (SCALE_ROWS=100000,1000000,10000000 adds 10M, ~1.3 GB of
# CSV): per-step time and peak memory, AUC, the TFT and model.fit floors (benchmarks/results/scale.json).
# Data and runs in /tmp/prodml-scale-bench; the 1M run takes several minutes.
SCALE_ROWS ?= 100000,1000000
bench-scale: $(RUNTIME)/.synced
	$(RUNTIME)/bin/python benchmarks/scale.py --rows $(SCALE_ROWS) --json benchmarks/results/scale.json

# Re-resolve both locks of ENV (runtime or serving) after editing requirements/$(ENV)*.in (needs the
# package index). The production closure is resolved alone; the dev tooling is then resolved on top of
# it with the production pins as constraints, and $(ENV)-dev.lock keeps only what the production lock lacks.
LOCK_VENV := .venv/lock
lock:
	@test -n "$(ENV)" || { echo "usage: make lock ENV=runtime|serving"; exit 2; }
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet pip==24.3.1 && $(LOCK_VENV)/bin/pip install --quiet -r requirements/$(ENV).in
	$(LOCK_VENV)/bin/pip freeze --all --exclude-editable | grep -v '^pip==' > $(LOCK_VENV)/prod.txt
	$(LOCK_VENV)/bin/pip install --quiet -c $(LOCK_VENV)/prod.txt -r requirements/$(ENV)-dev.in
	$(LOCK_VENV)/bin/pip freeze --all --exclude-editable | grep -v '^pip==' > $(LOCK_VENV)/all.txt
	(echo "# $(ENV) environment (production: the $(ENV) image and .venv/$(ENV)). Generated by 'make lock ENV=$(ENV)'"; \
	 echo "# from requirements/$(ENV).in; test-only packages are in $(ENV)-dev.lock."; \
	 echo "pip==24.3.1"; cat $(LOCK_VENV)/prod.txt) > requirements/$(ENV).lock
	(echo "# $(ENV) test tooling, installed into .venv/$(ENV) on top of $(ENV).lock, never into the image."; \
	 echo "# Generated by 'make lock ENV=$(ENV)' from requirements/$(ENV)-dev.in: only what $(ENV).lock lacks."; \
	 grep -vxF -f $(LOCK_VENV)/prod.txt $(LOCK_VENV)/all.txt || true) > requirements/$(ENV)-dev.lock
	rm -rf $(LOCK_VENV)

clean:
	rm -rf .venv $(PRODML_HOME) .prodml-demo-loop local_outputs
