"""The CLI's parts without a stack: times and words, URLs."""

from datetime import UTC, datetime, timedelta

import pytest
import typer
from salad.cli.common import ago, duration, normalise_url, plural, word

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "expected"), [
    (0.3, "just now"), (12.9, "12 s ago"), (61, "1 min ago"), (3 * 3600 + 5, "3 h ago"), (86400, "1 day ago"),
    (5 * 86400, "5 days ago"), (-3, "just now"),
])
def test_ago(seconds, expected):
    assert ago((NOW - timedelta(seconds=seconds)).isoformat(), now=NOW) == expected


def test_ago_reads_naive_timestamps_as_utc_and_none_as_never():
    assert ago((NOW - timedelta(seconds=30)).replace(tzinfo=None).isoformat(), now=NOW) == "30 s ago"
    assert ago(None) == "never"


def test_durations_plurals_and_the_pages_words():
    assert [duration(s) for s in (0.5, 12.4, 125, 7322)] == ["0.5 s", "12 s", "2 min 05 s", "2 h 02 min"]
    assert (plural(1, "fruit"), plural(3, "fruit"), plural(0, "task")) == ("1 fruit", "3 fruits", "0 tasks")
    assert [word(s) for s in ("pending", "in_progress", "completed", "failed", "succeeded", "queued")] == \
        ["waiting", "in progress", "completed", "failed", "done", "queued"]


def test_urls_lose_their_trailing_slashes_and_must_be_http():
    assert normalise_url(" http://127.0.0.1:8001/ ") == "http://127.0.0.1:8001"
    assert normalise_url("https://salad.example/api//") == "https://salad.example/api"
    for wrong in ("127.0.0.1:8001", "ftp://host", "http://"):
        with pytest.raises(typer.BadParameter):
            normalise_url(wrong)
