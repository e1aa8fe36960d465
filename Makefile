# The commands the README gives. Each installs what it needs first (scripts/bootstrap.sh, cached).
.PHONY: dev test bench lint clean bootstrap

PYTEST_ARGS ?=
BENCH_ARGS ?=

bootstrap:
	@bash scripts/bootstrap.sh

dev: bootstrap
	.venv/bin/alert-history dev

# pytest exits 5 when it collected no test: that must fail, not pass silently.
# The type check first: it takes seconds, the suite minutes.
test: bootstrap
	.venv/bin/mypy
	@.venv/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: bootstrap
	.venv/bin/alert-history bench $(BENCH_ARGS)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy

clean:
	rm -rf .venv .pytest_cache .ruff_cache .cache *.egg-info var
