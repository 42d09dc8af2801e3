"""Fixtures of the observability tests: a real Prometheus process per test, scraping given targets."""

import itertools
from contextlib import ExitStack

import pytest
from salad.cli.prometheus import render_config as render_local_config

from .prom import Prometheus, run_prometheus
from .promql import RULES, load_dashboard


@pytest.fixture
def dashboard() -> dict:
    return load_dashboard()


@pytest.fixture
def start_prometheus(tmp_path):
    """start_prometheus({"salad-shared": ["127.0.0.1:8001"], ...}) -> a running Prometheus scraping those
    targets every second with the salad rules loaded, on a free port; stopped at the end of the test."""
    with ExitStack() as stack:
        counter = itertools.count()

        def start(targets: dict[str, list[str]], scrape_interval: str = "1s") -> Prometheus:
            config = render_local_config(targets, scrape_interval, [RULES])
            return stack.enter_context(run_prometheus(config, tmp_path / f"prometheus-{next(counter)}"))

        yield start
