# Kubernetes targets: container images, the kind end-to-end run, the chart tests.
#
# Included from the Makefile (`include mk/k8s.mk`), which defines BIN (the virtualenv's bin
# folder) and STAMP (the virtualenv's "installed" marker). Everything cluster-side goes through
# the virtualenv (kubernetes client, helm-python-sdk): the host needs only Docker and kind.
#
#   make images       build ovserve-server:$(IMAGE_TAG) and ovserve-operator:$(IMAGE_TAG)
#   make e2e          kind cluster -> images loaded -> CRDs applied -> chart installed -> pytest e2e
#                     (E2E_KEEP=1 keeps the cluster afterwards; `make e2e-down` removes it)
#   make e2e-down     delete the kind cluster
#   make helm-test    the chart tests only (lint, render, validate), no cluster needed
#   make crds-sync    copy crds/*.yaml into helm/ovserve/crds/ (tests/helm checks they match)

DOCKER         ?= docker
KIND           ?= kind
IMAGE_TAG      ?= dev
SERVER_IMAGE   ?= ovserve-server:$(IMAGE_TAG)
OPERATOR_IMAGE ?= ovserve-operator:$(IMAGE_TAG)
KIND_CLUSTER   ?= ovserve-e2e
KIND_NODE_IMAGE ?=
E2E_NAMESPACE  ?= ovserve-e2e
E2E_RELEASE    ?= ovserve
E2E_KUBECONFIG ?= $(CURDIR)/e2e/.kubeconfig
E2E_KEEP       ?= 0
E2E_PYTEST_ARGS ?=

E2E_ENV = KUBECONFIG=$(E2E_KUBECONFIG) KIND_CLUSTER=$(KIND_CLUSTER) \
	E2E_NAMESPACE=$(E2E_NAMESPACE) E2E_RELEASE=$(E2E_RELEASE) \
	SERVER_IMAGE=$(SERVER_IMAGE) OPERATOR_IMAGE=$(OPERATOR_IMAGE) DOCKER=$(DOCKER)

.PHONY: images image-server image-operator e2e e2e-check e2e-run e2e-up e2e-install e2e-down \
	helm-test crds-sync

images: image-server image-operator

image-server:
	$(DOCKER) build -f server/Dockerfile -t $(SERVER_IMAGE) .

image-operator:
	$(DOCKER) build -f operator/Dockerfile -t $(OPERATOR_IMAGE) .

# Refuses plainly, before anything else runs, where Docker or kind is missing.
e2e-check:
	@command -v $(DOCKER) >/dev/null 2>&1 || { \
	  echo "make e2e: '$(DOCKER)' was not found on PATH. The end-to-end tests run on a kind"; \
	  echo "cluster, which needs Docker. Install Docker and kind, then run 'make e2e' again."; \
	  echo "Nothing was run."; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { \
	  echo "make e2e: Docker is installed but its daemon is not reachable ('$(DOCKER) info'"; \
	  echo "failed). Start Docker (or fix DOCKER_HOST), then run 'make e2e' again."; \
	  echo "Nothing was run."; exit 1; }
	@command -v $(KIND) >/dev/null 2>&1 || { \
	  echo "make e2e: '$(KIND)' was not found on PATH. Install kind (a pinned release binary,"; \
	  echo "or 'go install sigs.k8s.io/kind@v0.29.0'), then run 'make e2e' again."; \
	  echo "Nothing was run."; exit 1; }

e2e: e2e-check
	@$(MAKE) --no-print-directory e2e-run

# The cluster is deleted afterwards unless E2E_KEEP=1; pytest's exit status is kept.
e2e-run: e2e-up e2e-install
	@status=0; \
	$(E2E_ENV) $(BIN)/python -m pytest e2e -p no:cacheprovider $(E2E_PYTEST_ARGS) || status=$$?; \
	if [ $$status -ne 0 ]; then $(E2E_ENV) $(BIN)/python e2e/harness.py diagnose || true; fi; \
	if [ "$(E2E_KEEP)" != "1" ]; then $(KIND) delete cluster --name $(KIND_CLUSTER) || true; \
	  rm -f $(E2E_KUBECONFIG); fi; \
	exit $$status

e2e-up: e2e-check $(STAMP) images
	@$(BIN)/python -c 'import helm_python' 2>/dev/null || $(BIN)/python -m pip install --quiet helm-python-sdk
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster $(KIND_CLUSTER) exists: reusing it"; \
	  $(KIND) export kubeconfig --name $(KIND_CLUSTER) --kubeconfig $(E2E_KUBECONFIG); \
	else \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --kubeconfig $(E2E_KUBECONFIG) --wait 180s \
	    $(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE)); \
	fi
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(SERVER_IMAGE) $(OPERATOR_IMAGE)

# Model files onto the node (hostPath storage), CRDs applied first, then the chart.
e2e-install: e2e-up
	$(E2E_ENV) $(BIN)/python e2e/harness.py install

e2e-down:
	@if command -v $(KIND) >/dev/null 2>&1; then \
	  $(KIND) delete cluster --name $(KIND_CLUSTER); \
	else echo "kind is not installed: no cluster to delete"; fi
	rm -f $(E2E_KUBECONFIG)

helm-test: $(STAMP)
	@$(BIN)/python -c 'import helm_python' 2>/dev/null || $(BIN)/python -m pip install --quiet helm-python-sdk
	$(BIN)/python -m pytest tests/helm $(PYTEST_ARGS)

crds-sync:
	cp crds/inferenceserver.yaml crds/inferencemodel.yaml helm/ovserve/crds/
