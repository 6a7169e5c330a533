# The two commands of the README: `make run` and `make test`. Both set everything up first.
.PHONY: install run test lint typecheck pytest

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1

install:
	./scripts/bootstrap.sh

run: install
	.venv/bin/ragkb serve --demo

test: install lint typecheck pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

# The whole suite runs twice: on the embedded default (SQLite, folder broker) and on the
# production servers that run here (PostgreSQL, Redis), both started on loopback by the tests.
pytest:
	.venv/bin/python -m pytest --db sqlite --broker folder
	.venv/bin/python -m pytest --db postgresql --broker redis
