"""A salad's story in the browser: a salad that failed is opened from its link, its reason read, requeued,
and it completes; an order is checked before sending in Shared's words; finished salads are searched a
page at a time. The screenshots of docs/ are taken here and in test_page.py."""

import re
import signal

import httpx
from playwright.sync_api import expect

from tests.helpers import order, wait_final
from tests.web.conftest import FAST, screenshot

# One fruit of 4 s on one worker of one slot; a lease not renewed for 3 s is lost, and one lost lease fails
# the fruit (one attempt). Fruit names longer than 12 characters are refused.
ONE_ATTEMPT = {**FAST, "SALAD_MAX_ATTEMPTS": "1", "SALAD_LEASE_SECONDS": "3", "SALAD_HEARTBEAT_INTERVAL": "0.5",
               "SALAD_EXECUTION_TIME_MIN": "4", "SALAD_EXECUTION_TIME_MAX": "4", "SALAD_MAX_FRUIT_LENGTH": "12"}


def refused_by_the_api(stack, fruits: list[str]) -> str:
    response = httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": fruits}, headers=stack.client_headers)
    assert response.status_code == 422, response.text
    return response.json()["message"]


def test_a_failed_salad_is_opened_from_its_link_read_requeued_and_completes(make_stack, postgres_url, page,
                                                                             tmp_path):
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=1.0, env=ONE_ATTEMPT)
    page.goto(f"{stack.shared_url}/#token=not-the-token")
    expect(page.locator("#connection")).to_have_text("Needs a token")
    page.evaluate("window.marker = 'same page'")
    page.evaluate(f"location.hash = 'token={stack.client_token}'")  # a new link, followed without a reload
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#token-panel")).not_to_have_attribute("open", "")
    assert page.evaluate("window.marker") == "same page" and page.evaluate("location.hash") == ""
    expect(page.locator('#worker-list li[data-state="live"]')).to_have_count(1)
    screenshot(page, tmp_path, "page-empty.png")

    # Checked before sending, in the words Shared answers with, against Shared's limits (12 characters here).
    other = page.get_by_label("Other fruits")
    for typed, words in [("dragonfruit xl", "Fruit 1 is too long: at most 12 characters."),
                         ("kiwi, @@", "Fruit 2 (\"@@\") must start with a letter or a digit and hold only letters, "
                                      "digits, spaces and . ' - _.")]:
        other.fill(typed)
        other.press("Enter")
        expect(page.locator("#form-error")).to_have_text(words)
        assert refused_by_the_api(stack, [f.strip() for f in typed.split(",")]) == words
    other.fill("")
    assert httpx.get(f"{stack.shared_url}/v1/orders", headers=stack.client_headers).json()["items"] == []

    # The worker is killed while it prepares the first fruit: its lease is lost, and with it the only attempt;
    # the salad fails, and the fruits still queued are dropped with it.
    placed = order(stack, ["kiwi", "mango", "pear"])
    salad = page.locator(f'#order-list li[data-order="{placed["id"]}"]')
    expect(salad.locator('.fruit[data-state="running"]')).to_have_text(re.compile("running on worker-1"))
    worker = stack.worker_services[0]
    worker.signal(signal.SIGKILL)
    expect(salad.locator(".fruit[data-silent]")).to_have_text(
        re.compile(r"running on worker-1, not heard from for \d+ s"))
    failed_row = page.locator(f'#recent-list tr[data-order="{placed["id"]}"]')
    expect(failed_row.locator("td.failed")).to_have_text("failed")

    failed_row.get_by_role("link").click()
    assert page.evaluate("location.hash") == f"#order={placed['id']}"  # the salad's shareable link
    story = page.locator("#story")
    expect(story.locator("#story-title")).to_have_text(f"Salad #{placed['id']}")
    expect(story.locator("#story-reason")).to_have_text(re.compile(
        r"Why it failed: (kiwi|mango|pear) \(task \d+\) failed after 1 attempt: lease expired on worker worker-1"))
    expect(story.locator("tr.attempt")).to_have_text(
        re.compile(r"Attempt 1 on worker-1 failed at \d\d:\d\d:\d\d: lease expired on worker worker-1"))
    states = story.locator("tr.fruit-row td.state").all_inner_texts()
    assert sorted(states) == ["failed: cancelled: its order failed"] * 2 + ["failed: lease expired on worker worker-1"]
    screenshot(page, tmp_path, "page-failed.png")

    stack.respawn(worker)  # a worker again, under the same name
    stack.wait_ready([stack.find("worker-1")])
    story.get_by_role("button", name="Requeue the failed fruits").click()
    expect(story.locator("#story-note")).to_have_text("3 fruits queued again: the salad goes on.")
    expect(story.locator("#story-status")).to_have_text("completed", timeout=40_000)
    expect(story.locator("#story-failed")).to_be_hidden()  # the reason went when it stopped being true
    rows = story.locator("tr.fruit-row")
    expect(rows.locator("td.state")).to_have_text(["done"] * 3)
    for row, name in zip(rows.all(), ["kiwi", "mango", "pear"]):
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == name and cells[2] == "worker-1" and cells[8] == "1 of 1"
        assert all(re.fullmatch(r"\d\d:\d\d:\d\d", c) for c in cells[3:6]), cells
        assert re.fullmatch(r"\d\.\d\d s", cells[7]) and 3.5 <= float(cells[7][:-2]) <= 6, cells  # 4 s each
    expect(story.locator("tr.attempt")).to_have_count(1)  # the failed attempt stays in the story
    assert wait_final(stack, placed["id"])["status"] == "completed"
    # Charts: the page asks again when a salad finishes.
    expect(page.locator("#chart-rate rect.col").first).to_be_attached(timeout=20_000)
    expect(page.locator("#chart-load polyline").first).to_be_attached()
    screenshot(page, tmp_path, "page-story.png")

    # The link opens the same story in another tab.
    other_tab = page.context.new_page()
    other_tab.goto(f"{stack.shared_url}/#order={placed['id']}")
    expect(other_tab.locator("#story tr.fruit-row td.state")).to_have_text(["done"] * 3)
    other_tab.close()
    page.get_by_role("link", name="Close").click()
    expect(story).to_be_hidden()


def test_finished_salads_are_listed_and_searched_a_page_at_a_time(make_stack, postgres_url, page):
    stack = make_stack(postgres_url, workers=0, env=FAST)  # no worker: the orders stay open
    ids = [order(stack, ["fig", "kiwi"] if i % 3 == 0 else ["pear"])["id"] for i in range(12)]
    page.goto(f"{stack.shared_url}/#token={stack.client_token}")
    expect(page.locator("#connection")).to_have_text("Live")
    history = page.locator("section.history")
    expect(history.locator("#history-message")).to_have_text("No salad here.")  # none completed yet

    history.get_by_label("Which salads").select_option("All")
    rows = history.locator("#history-list tr")
    expect(rows).to_have_count(10)
    assert [int(r) for r in rows.evaluate_all("rs => rs.map(r => r.dataset.order)")] == ids[::-1][:10]
    expect(history.get_by_role("button", name="Newer")).to_be_disabled()
    history.get_by_role("button", name="Older").click()
    expect(history.locator("#history-message")).to_have_text("Salads 11 to 12, newest first")
    assert [int(r) for r in rows.evaluate_all("rs => rs.map(r => r.dataset.order)")] == ids[1::-1]
    expect(history.get_by_role("button", name="Older")).to_be_disabled()
    history.get_by_role("button", name="Newer").click()
    expect(rows).to_have_count(10)

    history.get_by_label("Fruit or salad number").fill("fig")
    history.get_by_role("button", name="Search").click()
    expect(history.locator("#history-message")).to_have_text("Salads 1 to 4 holding fig, newest first")
    assert [int(r) for r in rows.evaluate_all("rs => rs.map(r => r.dataset.order)")] == ids[::3][::-1]

    history.get_by_label("Fruit or salad number").fill(f"#{ids[0]}")
    history.get_by_role("button", name="Search").click()
    expect(page.locator("#story-title")).to_have_text(f"Salad #{ids[0]}")
    expect(page.locator("#story tr.fruit-row td.state")).to_have_text(["queued", "queued"])
