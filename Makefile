# make run   – serve on HOST:PORT (default 127.0.0.1:8000), embedded SQLite + in-memory layer:
#              one daphne process serves HTTP and websockets (production splits them: gunicorn
#              config.wsgi for HTTP, daphne config.asgi for /api/ws/; docs/operations.md)
# make test  – the whole test suite (set DATABASE_URL / REDIS_URL to run it on PostgreSQL + Redis)
# make bench – the quick benchmark suite
# make cluster – root: the production layout on this machine, in network namespaces: nginx,
#                three app hosts (gunicorn + daphne), Redis + replica + 3 Sentinels, PostgreSQL
#                (deploy/, docs/operations-scaling.md); CLUSTER=NAME for a second one
# make cluster-down – stop it: no namespace, link or process of it is left
# make drill-N – root: drill N (1 Redis primary killed, 2 app host cut off, 3 rolling restart,
#                4 50 ms between hosts) against the running cluster; DRILL_ARGS=--long for the
#                long form (python -m deploy.drills --help)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

CLUSTER ?= native

.PHONY: run test bench lint format venv venv-dev clean cluster cluster-down cluster-status drill-1 drill-2 drill-3 drill-4 drill-5

# venv: the runtime set only (what a server needs); venv-dev adds tests, lint and tooling.
venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

$(VENV)/.installed: requirements.txt
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	@echo "Creating $(VENV) and installing the pinned requirements (about a minute the first time)..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt
	@echo "$(VENV) is ready."
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/daphne -b $(HOST) -p $(PORT) config.asgi:application

# Without DATABASE_URL (PostgreSQL) and REDIS_URL the tests marked postgres/redis are
# deselected; the summary says how many. .ci/run runs the suite on both configurations.
test: venv-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv-dev
	$(BIN)/python -m bench all --quick

cluster: venv
	$(BIN)/python -m deploy.cluster up --name $(CLUSTER) $(CLUSTER_ARGS)

# The system python3 on purpose: stopping must work even when the venv is gone or broken.
cluster-down:
	$(PYTHON) -m deploy.cluster down --name $(CLUSTER)

cluster-status: venv
	$(BIN)/python -m deploy.cluster status --name $(CLUSTER)

drill-1 drill-2 drill-3 drill-4 drill-5: venv
	$(BIN)/python -m deploy.drills $(@:drill-%=%) --cluster $(CLUSTER) $(DRILL_ARGS)

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
