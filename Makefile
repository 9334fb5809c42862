# `make run` starts the whole stack on this machine; `make test` runs every check.
# Both create .venv/ and install the project into it (again whenever pyproject.toml
# changes), so a fresh clone needs only Python 3.11+.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
TYPED := switchboard evals bench orchestrator agents shared

.PHONY: run test lint typecheck imports pytest install

run: $(INSTALLED)
	$(BIN)/switchboard run

# Every check runs even when an earlier one fails, so one pass shows everything to fix.
test: $(INSTALLED)
	@failed=""; \
	echo "== ruff check"; $(BIN)/ruff check . || failed="$$failed ruff-check"; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || failed="$$failed ruff-format"; \
	echo "== mypy"; $(BIN)/mypy $(TYPED) || failed="$$failed mypy"; \
	echo "== lint-imports"; $(BIN)/lint-imports || failed="$$failed lint-imports"; \
	echo "== pytest"; $(RUN_PYTEST) || failed="$$failed pytest"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make test: all checks passed"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy $(TYPED)

# The layers in pyproject.toml ([tool.importlinter]): a back-arrow fails the build.
imports: $(INSTALLED)
	$(BIN)/lint-imports

pytest: $(INSTALLED)
	@$(RUN_PYTEST)

# pytest exits 5 when it collected no tests and 0 when every test was skipped; both mean
# nothing was tested (a broken conftest, a wrong path, services missing), so both fail.
RUN_PYTEST = ( report=$$(mktemp); trap 'rm -f "$$report"' EXIT; \
	$(BIN)/python -m pytest -q --junitxml="$$report" $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure" >&2; exit 1; fi; \
	if [ $$code -ne 0 ]; then exit $$code; fi; \
	$(BIN)/python -c "$$RAN_SOME_TESTS" "$$report" )

define RAN_SOME_TESTS
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
ran = sum(int(s.get("tests", 0)) - int(s.get("skipped", 0)) for s in suites)
if ran < 1:
    sys.exit("make test: pytest ran no tests (all were skipped or deselected); that is a failure")
print(f"make test: {ran} test(s) ran")
endef
export RAN_SOME_TESTS

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@
