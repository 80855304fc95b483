# Two commands matter: `make plan` (offline resource plan, STACK=dev|prod) and `make test`.
PYTHON ?= python3
STACK ?= dev
REGION ?=

.PHONY: install plan test lint schema bench

install:
	$(PYTHON) -m pip install -r requirements-dev.txt

plan:
	$(PYTHON) -m offline.plan $(STACK) $(if $(REGION),--region $(REGION))

test:
	$(PYTHON) -m pytest --cov=components --cov=services --cov-report=term-missing:skip-covered

lint:
	ruff check .

schema:
	$(PYTHON) -m offline.schema
