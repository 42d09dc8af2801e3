"""The page under a real `salad up`: a worker that hangs shows unresponsive then gone, is killed (-9) and
restarted under its name while the stack keeps serving, its fruit retried and the salad completed; a frozen
Shared makes the page say it is stale; and a restarted `salad up` is followed by the open page, same token."""

import os
import re
import signal

import httpx
from playwright.sync_api import expect

from salad.cli.stack import free_port
from tests.test_up_supervisor import START_SECONDS, Up, workdir  # noqa: F401 - workdir is a fixture

# Workers check in and renew their leases every second; one silent for 3 s is unresponsive, for 6 s no
# longer live, and its fruits are retried; each fruit takes 8 s.
LIVENESS = {"SALAD_HEARTBEAT_INTERVAL": "1", "SALAD_WORKER_TTL_SECONDS": "6", "SALAD_LEASE_SECONDS": "6",
            "SALAD_EXECUTION_TIME_MIN": "8", "SALAD_EXECUTION_TIME_MAX": "8", "SALAD_INTAKE_INTERVAL": "0.1",
            "SALAD_OUTBOX_INTERVAL": "0.1"}


def order(up: Up, fruits: list[str]) -> int:
    state = up.state
    response = httpx.post(f"{state['shared_url']}/v1/orders", json={"fruits": fruits}, timeout=10,
                          headers={"Authorization": f"Bearer {state['tokens']['client']}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_killed_worker_and_a_restarted_salad_up_under_the_open_page(workdir, page):  # noqa: F811
    ports = ("--shared-port", str(free_port()), "--master-port", str(free_port()))
    up = Up(workdir, "--workers", "2", "--slots", "1", "--time-scale", "1", *ports, env=LIVENESS)
    try:
        link = up.expect("Web page", timeout=START_SECONDS).split()[-1]
        up.expect("Add a worker:", timeout=START_SECONDS)
        page.goto(link)
        expect(page.locator("#connection")).to_have_text("Live")
        page.evaluate("window.marker = 'same page'")
        expect(page.locator('#worker-list li[data-state="live"]')).to_have_count(2)

        salad = order(up, ["apple", "kiwi"])
        held = page.locator(f'li[data-order="{salad}"] .fruit', has_text="running on worker-1")
        expect(held).to_have_count(1)
        pid = up.state["services"]["worker-1"]["pid"]
        os.kill(pid, signal.SIGSTOP)  # it hangs: no check-in, no lease renewed
        worker = page.locator('#worker-list li[data-worker="worker-1"]')
        expect(worker).to_have_attribute("data-state", "unresponsive")
        expect(worker.locator(".load")).to_have_text(re.compile(r"unresponsive, last seen [3-6] s ago"))
        expect(page.locator(f'li[data-order="{salad}"] .fruit[data-silent]')).to_have_text(
            re.compile(r"running on worker-1, not heard from for \d+ s"))
        expect(worker).to_have_attribute("data-state", "gone")
        expect(worker.locator(".load")).to_have_text(re.compile(r"gone, last seen \d+ s ago"))

        os.kill(pid, signal.SIGKILL)
        up.expect(f"worker-1 (pid {pid}) was killed by SIGKILL")
        up.expect("worker-1 is serving again")
        expect(worker).to_have_attribute("data-state", "live")  # back under its name
        expect(page.locator(f'#recent-list tr[data-order="{salad}"] td.time')).to_be_visible(timeout=40_000)
        expect(page.locator("[data-silent], #worker-list li:not([data-state='live'])")).to_have_count(0)
        page.goto(f"{link.split('#')[0]}#order={salad}")  # its story: the fruit was tried twice
        story = page.locator("#story")
        expect(story.locator("#story-status")).to_have_text("completed")
        expect(story.locator("tr.attempt")).to_have_text(
            re.compile(r"Attempt 1 on worker-1 failed at .*: lease expired on worker worker-1"))
        page.evaluate("window.marker = 'same page'")

        # Shared freezes with the stream open: after the keep-alive's 15 s and 5 more, the page says so.
        shared = up.state["services"]["shared"]["pid"]
        os.kill(shared, signal.SIGSTOP)
        try:
            expect(page.locator("#connection")).to_have_text(
                re.compile(r"No news for \d+ s: this may be out of date"), timeout=30_000)
        finally:
            os.kill(shared, signal.SIGCONT)
        expect(page.locator("#connection")).to_have_text("Live", timeout=20_000)

        assert up.stop() == 0, up.output
        expect(page.locator("#connection")).not_to_have_text("Live")
        up = Up(workdir, "--workers", "2", "--slots", "1", "--time-scale", "1", env=LIVENESS)  # same ports, tokens
        up.expect("Add a worker:", timeout=START_SECONDS)
        expect(page.locator("#connection")).to_have_text("Live", timeout=30_000)
        after = order(up, ["pear"])
        expect(page.locator(f'[data-order="{after}"]').first).to_be_visible()
        assert page.evaluate("window.marker") == "same page"  # no reload, no new token
        expect(page.locator("#token-panel")).not_to_have_attribute("open", "")
        assert up.stop() == 0, up.output
    finally:
        up.stop()  # at once if it stopped above
