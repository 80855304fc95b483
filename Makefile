# Two commands matter: `make plan` (offline resource plan, STACK=dev|prod) and `make test`.
PYTHON ?= python3
STACK ?= dev
REGION ?=

.PHONY: install plan test time-tests lint schema bench

install:
	$(PYTHON) -m pip install -r requirements-dev.txt

plan:
	$(PYTHON) -m offline.plan $(STACK) $(if $(REGION),--region $(REGION))

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
