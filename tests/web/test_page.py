"""The web page in a real browser (Debian's headless Chromium): order, follow live, outlive a restart."""

import re

from playwright.sync_api import Page, expect

from tests.helpers import order, wait_final
from tests.web.conftest import screenshot


# Records every fruit state and connection state the page shows, between two snapshots too.
RECORDER = """() => {
  window.seen = new Set();
  window.connection = [];
  window.marker = "same page";
  new MutationObserver(() => {
    for (const salad of document.querySelectorAll("#order-list li.salad")) {
      salad.querySelectorAll(".fruit").forEach((fruit, i) =>
        window.seen.add(`${salad.dataset.order}/${i}/${fruit.querySelector(".state").textContent}`));
    }
  }).observe(document.getElementById("order-list"), { childList: true, subtree: true });
  const badge = document.getElementById("connection");
  new MutationObserver(() => window.connection.push(badge.textContent))
    .observe(badge, { childList: true, characterData: true, subtree: true });
}"""


def states_seen(page: Page, order_id: int) -> dict[int, set[str]]:
    by_fruit: dict[int, set[str]] = {}
    for entry in page.evaluate("[...window.seen]"):
        order, position, state = entry.split("/", 2)
        if int(order) == order_id:
            by_fruit.setdefault(int(position), set()).add(state)
    return by_fruit


def order_through_the_form(page: Page, picked: list[str], typed: str) -> int:
    """With the keyboard alone: Space ticks a fruit, Enter in the text field sends the order."""
    for fruit in picked:
        box = page.get_by_role("checkbox", name=fruit, exact=True)
        box.focus()
        page.keyboard.press("Space")
        expect(box).to_be_checked()
    page.get_by_label("Other fruits").fill(typed)
    expect(page.locator("#selection")).to_have_text(f"{len(picked) + len(typed.split(','))} fruits chosen")
    page.get_by_label("Other fruits").press("Enter")
    confirmation = page.locator("#form-ok")
    expect(confirmation).to_have_text(re.compile(r"Salad #\d+ ordered"))
    return int(re.search(r"#(\d+)", confirmation.inner_text()).group(1))


def test_order_a_salad_in_the_browser_and_see_it_prepared_and_completed(stack, page, tmp_path):
    page.goto(f"{stack.shared_url}/")
    expect(page.locator("#connection")).to_have_text("Needs a token")  # the stream was refused with 401
    page.get_by_label("Client token").fill(stack.client_token)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#worker-list li")).to_have_count(2)
    page.evaluate(RECORDER)

    order_id = order_through_the_form(page, ["apple", "kiwi", "mango", "pear"], "fig")

    salad = page.locator(f'#order-list li[data-order="{order_id}"]')
    expect(salad.locator(".fruit")).to_have_count(5)
    expect(salad.get_by_role("progressbar")).to_have_attribute("aria-valuemax", "5")
    finished = page.locator(f'#recent-list tr[data-order="{order_id}"]')
    expect(finished).to_be_visible()
    expect(salad).to_have_count(0)
    expect(finished.locator("td.time")).to_have_text(re.compile(r"^\d+\.\d\d s$"))
    expect(page.locator("#completed-count")).to_have_text("1")
    expect(page.locator("#announcer")).to_contain_text(f"Salad {order_id} is ready in")

    seen = states_seen(page, order_id)
    assert sorted(seen) == [0, 1, 2, 3, 4]  # every fruit was shown...
    for states in seen.values():  # ...running on a worker; and fruits were shown done before the salad was
        assert any(re.fullmatch(r"running on worker-[12]", s) for s in states), states
    assert any(re.fullmatch(r"done by worker-[12]", s) for states in seen.values() for s in states), seen
    final = wait_final(stack, order_id, timeout=5)
    assert finished.locator("td.time").inner_text() == f"{final['preparation_time']:.2f} s"

    # A second, bigger salad, caught half done for the screenshots, wide and on a phone.
    second = order_through_the_form(page, ["banana", "cherry", "grape", "melon", "peach", "plum"], "lychee")
    expect(page.locator(f'li[data-order="{second}"] .fruit[data-state="done"]').first).to_be_visible()
    screenshot(page, tmp_path, "page-busy.png")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    screenshot(page, tmp_path, "page-mobile.png")


def test_the_page_reconnects_after_a_shared_restart_and_shows_new_orders(stack, page):
    page.goto(f"{stack.shared_url}/#token={stack.client_token}")
    expect(page.locator("#connection")).to_have_text("Live")
    assert page.evaluate("location.hash") == ""  # the token left the address bar (kept in localStorage)
    page.evaluate(RECORDER)
    before = order(stack, ["apple", "kiwi"])["id"]
    expect(page.locator(f'[data-order="{before}"]').first).to_be_visible()

    stack.restart_service(stack.find("shared"))  # SIGTERM, then a new process on the same port
    after = order(stack, ["mango", "pear", "plum"])["id"]

    expect(page.locator(f'[data-order="{after}"]').first).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Live")
    assert "Reconnecting…" in page.evaluate("window.connection")
    assert page.evaluate("window.marker") == "same page"  # EventSource reconnected; nothing reloaded the page
    # ...and follows it live: its fruits get done (Master may report the salad itself later: it backs off
    # while Shared is away).
    progress = f'li[data-order="{after}"] .fruit[data-state="done"], tr[data-order="{after}"]'
    expect(page.locator(progress).first).to_be_visible()
