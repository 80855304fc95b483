# Two commands matter: `make plan` (offline resource plan, STACK=dev|prod) and `make test`.
PYTHON ?= python3
STACK ?= dev
REGION ?=

.PHONY: install plan test time-tests lint schema bench cost preflight diagram base-image

install:
	$(PYTHON) -m pip install -r requirements-dev.txt

plan:
	$(PYTHON) -m offline.plan $(STACK) $(if $(REGION),--region $(REGION))

# Idle monthly baseline from the offline plan and offline/prices.json; MAX_MONTHLY=100 fails
# (exit 1) above it, exit 3 when the plan holds something the table cannot price.
cost:
	$(PYTHON) -m offline.cost $(STACK) $(if $(REGION),--region $(REGION)) \
		$(if $(MAX_MONTHLY),--max-monthly $(MAX_MONTHLY))

# Read-only checks of the account the AWS credentials point at, before `pulumi up`.
preflight:
	$(PYTHON) -m offline.preflight $(STACK) $(if $(REGION),--region $(REGION))

# The worker's base image pin (services/worker/Dockerfile's FROM line) against Docker Hub: exit 1
# when the tag has moved or the pinned digest no longer resolves; WRITE=1 re-pins at the tag's
# digest, TAG=<tag> WRITE=1 moves to another tag (scripts/refresh_base_image.py).
base-image:
	$(PYTHON) scripts/refresh_base_image.py $(if $(WRITE),--write,--check) $(if $(TAG),--tag $(TAG))

# docs/architecture.dot and .svg from the dev plan (the SVG needs Graphviz's `dot`).
diagram:
	$(PYTHON) -m offline.diagram dev

# Parallel (pytest-xdist): the worker count and distribution are in pyproject.toml's addopts.
test:
	$(PYTHON) -m pytest --cov=components --cov=services --cov-report=term-missing:skip-covered

# Wall time of `make test`'s command and of the infrastructure + policy tests alone.
time-tests:
	$(PYTHON) scripts/time_tests.py

lint:
	ruff check .
	ruff format --check .

schema:
	$(PYTHON) -m offline.schema
