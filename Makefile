# The two commands a new user needs: `make run` and `make test`. Everything else is for developers.
PY := .venv/bin/python
SHELL := /bin/bash
STAMP := .venv/.installed

.PHONY: run test venv migrate check bench soak e2e clean release

run: venv
	@bash scripts/run.sh

test: venv
	@bash scripts/test.sh

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@bash scripts/install.sh
	@touch $(STAMP)

migrate: venv
	$(PY) manage.py migrate

check: venv
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py check

bench: venv
	@bash scripts/bench.sh

soak: venv
	@bash scripts/soak.sh

# The production release steps (docs/deploy.md): migrate, cache table, static files, crons, Stripe endpoint.
release: venv
	@bash scripts/release.sh

clean:
	rm -rf var/test-artifacts .pytest_cache
