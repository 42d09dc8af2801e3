"""The CLI's parts without a stack: times and words, URLs, the stack's folder and files, restarts' backoff."""

import os
import signal
import socket
import stat
from datetime import UTC, datetime, timedelta

import pytest
import typer
from salad.cli.common import ago, duration, normalise_url, plural, word
from salad.cli.home import StackState, find_home, where_looked, write_private
from salad.cli.ports import PortInUse, check_free
from salad.cli.supervisor import Backoff, how_it_ended

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


def test_the_stack_is_found_from_any_folder_below_or_from_salad_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SALAD_HOME", raising=False)
    (tmp_path / ".salad").mkdir()
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)

    assert find_home(below) == tmp_path / ".salad"
    monkeypatch.setenv("SALAD_HOME", str(tmp_path / "elsewhere"))
    assert find_home(below) is None
    assert where_looked(below) == f"SALAD_HOME={tmp_path / 'elsewhere'} is not a folder"
    (tmp_path / "elsewhere").mkdir()
    assert find_home(below) == tmp_path / "elsewhere"


def test_stack_files_are_private_and_tightened_at_every_save(tmp_path):
    state = StackState(tmp_path, shared_url="http://127.0.0.1:9001", master_url="http://127.0.0.1:9000")
    state.save()
    (tmp_path / "client.token").chmod(0o644)
    old_umask = os.umask(0)
    try:
        state.save()
    finally:
        os.umask(old_umask)

    loaded = StackState.load(tmp_path)
    assert (loaded.tokens, loaded.port("shared"), loaded.port("master")) == (state.tokens, 9001, 9000)
    assert (tmp_path / "client.token").read_text() == state.tokens["client"]
    for name in ("stack.json", "client.token"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert not state.running()


def test_a_damaged_stack_file_is_reported(tmp_path):
    write_private(tmp_path / "stack.json", '{"tokens": {"client": "x"}}')
    with pytest.raises(ValueError, match="stack.json does not hold the client, worker, master tokens"):
        StackState.load(tmp_path)
    write_private(tmp_path / "stack.json", "{not json")
    with pytest.raises(ValueError, match="cannot read"):
        StackState.load(tmp_path)


def test_a_port_in_use_is_named_with_its_holder():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"port {port} \(for Master\) is in use by pid {os.getpid()} "):
            check_free({"Master": (port, "--master-port")})


def test_backoff_doubles_up_to_its_cap_and_exits_are_told_in_words():
    backoff = Backoff(first=1, factor=2, cap=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert how_it_ended(-signal.SIGKILL) == "was killed by SIGKILL"
    assert how_it_ended(3) == "exited with code 3"


def test_up_uses_salad_home_even_before_it_exists(tmp_path, monkeypatch):
    from salad.cli.local import up_home

    monkeypatch.setenv("SALAD_HOME", str(tmp_path / "stacks" / "demo"))
    home, state = up_home()

    assert home == tmp_path / "stacks" / "demo" and state.home == home
    assert not home.exists(), "made only once its ports are known to be free"
