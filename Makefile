# The two commands a new user needs: `make run` and `make test`. Everything else is for developers.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: run test venv migrate check bench soak e2e clean

run: venv
	@bash scripts/run.sh

test: venv
	@bash scripts/test.sh

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing Python packages into .venv ..."
	@$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

migrate: venv
	$(PY) manage.py migrate

check: venv
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py check

bench: venv
	@bash scripts/bench.sh

clean:
	rm -rf var/test-artifacts .pytest_cache
