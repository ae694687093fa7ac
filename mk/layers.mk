# mk/layers.mk - the Lambda layers: KubeLayer's build and the layer-size benchmark. Included by the
# Makefile, which defines BIN and STAMP (the project venv).
#
#   layer-size        bench/layer_size.py: KubeLayer built for candidate `kubernetes` versions as
#                     `sam build` builds it; installed/stripped/zipped MiB, import and first-call
#                     times, and reconcile's total (podslots layer + KubeLayer + code) vs 250 MB.
#   build-kube-layer  the stripped KubeLayer in build/layers/kube/python: layers/kube/Makefile's
#                     build-KubeLayer (what `sam build` runs), with the venv's python3.13.

KUBE_LAYER_OUT := $(CURDIR)/build/layers/kube

.PHONY: layer-size build-kube-layer

layer-size: $(STAMP) ## KubeLayer per kubernetes version: MiB installed/stripped/zipped, import ms, total vs 250 MB
	$(BIN)/python -m bench.layer_size

build-kube-layer: $(STAMP) ## Build the stripped KubeLayer into build/layers/kube/python (as sam build does)
	$(MAKE) --no-print-directory -f layers/kube/Makefile build-KubeLayer \
		ARTIFACTS_DIR="$(KUBE_LAYER_OUT)" KUBE_LAYER_PYTHON="$(CURDIR)/$(BIN)/python"

# requirements-dev.txt includes layers/kube/requirements.txt: a new kubernetes pin must reinstall
# the venv too (the tests and mypy run against the pinned client).
ifdef STAMP
$(STAMP): layers/kube/requirements.txt
endif
