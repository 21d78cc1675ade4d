# RouteMQ for systemd.  `make run` runs the product on the embedded default;
# `make test` installs what the tests need and runs the whole suite.
.PHONY: run test test-setup unit bench deb clean

run:
	./scripts/run.sh

test-setup:
	./scripts/test-setup.sh

test: test-setup
	./scripts/test.sh

deb:
	./scripts/deb.sh

bench:
	./scripts/bench.sh

unit:
	PYTHONPATH=$(CURDIR) python3 -m pytest -q tests/unit

clean:
	rm -rf build dist *.egg-info .venvs .pytest_cache
