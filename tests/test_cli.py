"""The `salad` command as a user runs it: demo and up on the embedded PostgreSQL, order/status/workers."""

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from salad.cli.stack import free_port


def salad(*args: str, timeout: float = 120, cwd: Path | None = None,
          **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "salad", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "COLUMNS": "120", **env})


def test_demo_runs_a_salad_on_the_embedded_default_and_prints_its_completion_time(tmp_path):
    done = salad("demo", "--fruits", "6", "--workers", "2", "--time-scale", "0.02", timeout=300)  # > start timeout

    assert done.returncode == 0, done.stdout + done.stderr
    assert "The salad is ready! Enjoy!" in done.stdout
    assert "6 fruits in" in done.stdout
    assert "worker-1" in done.stdout and "worker-2" in done.stdout


@pytest.fixture
def workdir():
    """A working folder for `salad up` that other users may enter: as root, the embedded PostgreSQL runs as
    its own user, which must reach .salad/postgres (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="salad-up-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def salad_up(folder: Path) -> tuple[subprocess.Popen, str]:
    """`salad up` in `folder`, on its embedded PostgreSQL, until its stack is up (its processes recorded in
    .salad/stack.json); returns the process and Shared's URL."""
    import os

    stack_file = folder / ".salad" / "stack.json"
    stack_file.unlink(missing_ok=True)
    shared_port, master_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "SALAD_DATABASE_URL"} | {"COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", "salad", "up", "--workers", "1", "--time-scale", "0.01",
         "--shared-port", str(shared_port), "--master-port", str(master_port)],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C works, even under `&`
    deadline = time.monotonic() + 240  # PostgreSQL, then the services (START_TIMEOUT: 120 s)
    while not (stack_file.exists() and json.loads(stack_file.read_text())["services"]):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "salad up did not start"
        time.sleep(0.2)
    return process, f"http://127.0.0.1:{shared_port}"


def stop(process: subprocess.Popen, sig: int) -> str:
    process.send_signal(sig)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    return output


def test_up_keeps_its_postgresql_between_runs_and_stops_it_on_sigterm_and_ctrl_c(workdir):
    pid_file = workdir / ".salad" / "postgres" / "postmaster.pid"
    first, shared_url = salad_up(workdir)
    assert pid_file.exists()
    ordered = salad("order", "apple", "kiwi", "--wait", "--json", "--shared-url", shared_url, cwd=workdir)
    assert ordered.returncode == 0, ordered.stdout + ordered.stderr
    order_id = json.loads(ordered.stdout)["id"]
    stop(first, signal.SIGTERM)
    assert not pid_file.exists(), "salad up left its PostgreSQL running"

    second, shared_url = salad_up(workdir)
    try:
        shown = salad("status", str(order_id), "--json", "--shared-url", shared_url, cwd=workdir)
    finally:
        output = stop(second, signal.SIGINT)

    assert "starting PostgreSQL in .salad/postgres" in output
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["status"] == "completed"
    assert not pid_file.exists(), "salad up left its PostgreSQL running after Ctrl-C"


def test_demo_reports_a_service_that_cannot_start_with_the_end_of_its_log():
    broken = salad("demo", "--fruits", "2", SALAD_MAX_FRUITS="0")

    assert broken.returncode == 1
    assert "error: shared exited with code 1; its log" in broken.stderr, broken.stdout + broken.stderr
    assert "max_fruits" in broken.stderr  # the log's last lines say which setting
    assert "Traceback" not in broken.stdout + broken.stderr


@pytest.fixture
def stack(make_stack, postgres_url):
    return make_stack(postgres_url, workers=2, slots=2, time_scale=0.01,
                      env={"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"})


def test_order_wait_json_status_and_workers(stack):
    ordered = salad("order", "apple", "kiwi", "mango", "--wait", "--json", "--shared-url", stack.shared_url,
                    SALAD_CLIENT_TOKEN=stack.client_token)

    assert ordered.returncode == 0, ordered.stderr
    final = json.loads(ordered.stdout)
    assert final["status"] == "completed" and final["counts"]["done"] == 3

    shown = salad("status", str(final["id"]), "--shared-url", stack.shared_url, "--token", stack.client_token)
    assert shown.returncode == 0 and "completed" in shown.stdout and "kiwi" in shown.stdout

    listed = json.loads(salad("workers", "--json", "--master-url", stack.master_url,
                              SALAD_CLIENT_TOKEN=stack.client_token).stdout)
    assert sorted(w["name"] for w in listed) == ["worker-1", "worker-2"]


def test_order_wait_shows_progress_and_the_completion_time(stack):
    ordered = salad("order", "pear", "plum", "--wait", "--shared-url", stack.shared_url,
                    SALAD_CLIENT_TOKEN=stack.client_token)

    assert ordered.returncode == 0, ordered.stderr
    assert "2/2" in ordered.stdout
    assert "The salad is ready! Enjoy!" in ordered.stdout


def test_clear_errors_for_an_unreachable_service_and_a_refused_order(stack):
    nowhere = f"http://127.0.0.1:{free_port()}"

    unreachable = salad("order", "apple", "--shared-url", nowhere)
    refused = salad("order", "", "--shared-url", stack.shared_url, SALAD_CLIENT_TOKEN=stack.client_token)
    missing = salad("status", "424242", "--shared-url", stack.shared_url, SALAD_CLIENT_TOKEN=stack.client_token)
    wrong_token = salad("order", "apple", "--shared-url", stack.shared_url, SALAD_CLIENT_TOKEN="not-a-token")

    assert unreachable.returncode == 4 and "cannot reach" in unreachable.stderr
    assert refused.returncode == 1 and "422" in refused.stderr and "Fruit 1 is empty" in refused.stderr
    assert missing.returncode == 3 and "order 424242 not found" in missing.stderr
    assert wrong_token.returncode == 1 and "401" in wrong_token.stderr
    assert "SALAD_CLIENT_TOKEN" in wrong_token.stderr
    for failed in (unreachable, refused, missing, wrong_token):
        assert failed.stdout == "" and "Traceback" not in failed.stderr


def test_failed_lists_failed_tasks_and_requeue_resumes_their_order(make_stack, postgres_url):
    limits = {"SALAD_TASK_TIMEOUT_SECONDS": "0.2", "SALAD_EXECUTION_TIME_MIN": "30", "SALAD_EXECUTION_TIME_MAX": "30",
              "SALAD_MAX_ATTEMPTS": "2", "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=1.0, env=limits)
    auth = {"SALAD_CLIENT_TOKEN": stack.client_token, "SALAD_MASTER_URL": stack.master_url}
    ordered = json.loads(salad("order", "coconut", "--wait", "--json", "--shared-url", stack.shared_url, **auth).stdout)
    assert ordered["status"] == "failed"

    listed = json.loads(salad("failed", "--json", "--order", str(ordered["id"]), **auth).stdout)
    table = salad("failed", **auth)
    requeued = salad("requeue", "--order", str(ordered["id"]), **auth)
    neither = salad("requeue", **auth)

    assert [(t["fruit"], len(t["failures"]), t["failures"][0]["worker"]) for t in listed] == [("coconut", 2, "worker-1")]
    assert "coconut" in table.stdout and "stopped after 0.2 s" in table.stdout
    assert requeued.returncode == 0 and "1 task queued again" in requeued.stdout
    assert neither.returncode == 2 and "TASK_ID or --order" in neither.stderr


def test_errors_exit_codes_words_and_times_as_documented(stack):
    auth = {"SALAD_CLIENT_TOKEN": stack.client_token}
    slash = stack.shared_url + "/"
    missing = salad("status", "9999", "--json", "--shared-url", slash, **auth)
    unknown = salad("requeue", "--order", "999999", "--master-url", stack.master_url + "/", **auth)
    done = salad("order", "fig", "--wait", "--shared-url", slash, **auth)
    order_id = done.stdout.split("order ")[-1].split(":")[0]
    shown = salad("status", order_id, "--shared-url", slash, **auth)
    listed = salad("workers", "--master-url", stack.master_url, **auth)
    for worker in stack.worker_services:
        worker.signal(signal.SIGSTOP)  # the next salad waits while --timeout runs out
    try:
        late = salad("order", "lime", "--wait", "--timeout", "0.5", "--shared-url", stack.shared_url, **auth)
    finally:
        for worker in stack.worker_services:
            worker.signal(signal.SIGCONT)

    assert (missing.returncode, missing.stdout) == (3, "") and "order 9999 not found" in missing.stderr
    assert unknown.returncode == 3 and "order 999999 not found" in unknown.stderr
    assert done.returncode == 0 and "1 fruit in" in done.stdout, done.stdout + done.stderr
    assert shown.returncode == 0 and "completed in" in shown.stdout
    assert "ago" in shown.stdout or "ordered just now" in shown.stdout  # a relative time, not a timestamp
    assert " done " in shown.stdout and "succeeded" not in shown.stdout  # the web page's words
    assert "worker-1" in listed.stdout and ("ago" in listed.stdout or "just now" in listed.stdout)
    assert not re.search(r"\d{4}-\d\d-\d\dT", listed.stdout), "no ISO timestamp"
    assert late.returncode == 4 and "after 0.5 s (--timeout)" in late.stderr, late.stdout + late.stderr
    assert "still waiting" in late.stderr or "still in progress" in late.stderr


def test_version_short_help_examples_and_exit_codes_in_help():
    version = salad("--version")
    root, order = salad("-h"), salad("order", "-h")
    root_text, order_text = (" ".join(shown.stdout.split()) for shown in (root, order))  # help is wrapped

    assert version.returncode == 0 and version.stdout.startswith("salad ")
    assert root.returncode == 0 and "Exit codes: 0 done; 1 error" in root_text
    assert "3 not found; 4 a service out of reach" in root_text
    assert order.returncode == 0 and "Usage: salad order [OPTIONS] FRUIT..." in order_text
    assert "salad order apple banana kiwi --wait" in order_text  # an example
    assert "<bool>" not in order_text + root_text and "{fruits}" not in order_text
