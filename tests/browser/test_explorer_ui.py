"""The explorer's web UI in real headless Chromium (Debian's, driven by Playwright; no browser is
downloaded), on a daemon fed agent traffic by the OpenTelemetry SDK (the traffic of
tests/integration/test_explorer_api.py). Every step is checked against what was sent, the main
flows are driven from the keyboard, and no page logs a console error. Screenshots are kept in
test-artifacts/explorer/ (ignored by git).
"""
from __future__ import annotations

import pytest

from testkit.harness import ROOT
from tests.integration.test_explorer_api import (CHECKOUT, MS, SESSION, Api, cost, hex_id, send_traffic, start_daemon,
                                                 wait_stored)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "explorer"



@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory):
    daemon = start_daemon(tmp_path_factory.mktemp("explorer-ui"))
    try:
        api = Api(daemon)
        sent = send_traffic(daemon)
        wait_stored(api, sent)
        yield daemon, api, sent
    finally:
        daemon.stop()
        daemon.kill()


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (its start is seconds on a loaded machine); each test gets a
    fresh context of its own (`page`), which shares no cookies, storage or cache with another."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(explorer, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.set_default_timeout(15_000)
        yield page
    finally:
        context.close()
    assert problems == [], problems


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sessions_list_then_session_tree_from_the_keyboard(explorer, page) -> None:
    _, api, sent = explorer
    page.goto(api.url + "/")
    row = page.locator(f'#sessions tr[data-session="{SESSION}"]')
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "travel-agent" and cells[2] == "planner" and cells[3] == "5"
    assert cells[5] == "3.00 s" and cells[6] == "2700 / 280" and cells[7] == f"${cost(1200, 80) + cost(1500, 200):.6f}"
    assert page.locator(f'#sessions tr[data-session="{CHECKOUT}"] .badge.trig').is_visible()
    shot(page, "1-sessions")

    # Filter from the keyboard: type a service, press Enter.
    page.get_by_label("Service").fill("travel-agent")
    page.get_by_label("Service").press("Enter")
    page.wait_for_function("() => location.hash.includes('service=travel-agent')")
    page.locator("#sessions").wait_for()
    assert page.locator("#sessions tbody tr").evaluate_all("rows => rows.map(r => r.dataset.session)") == [SESSION]

    # Tab to the session's link and open it with Enter.
    link = page.get_by_role("link", name=SESSION)
    link.focus()
    page.keyboard.press("Enter")
    page.locator("#tree").wait_for()
    shown = page.locator("#tree tbody tr").evaluate_all("rows => rows.map(r => ({...r.dataset}))")
    rows = {r["spanId"]: r for r in shown}
    assert set(rows) == {hex_id(span) for span in sent.spans.values()}
    expected = {"invoke_agent planner": ("agent", 3000, 2700, 280, cost(1200, 80) + cost(1500, 200)),
                "chat#1": ("llm", 1000, 1200, 80, cost(1200, 80)),
                "execute_tool search_flights": ("tool", 300, 0, 0, 0.0),
                "execute_tool book_hotel": ("tool", 400, 0, 0, 0.0),
                "chat#2": ("llm", 800, 1500, 200, cost(1500, 200))}
    for name, (kind, ms, tokens_in, tokens_out, usd) in expected.items():
        shown = rows[hex_id(sent.spans[name])]
        assert shown["kind"] == kind and int(shown["durationNs"]) == ms * MS, name
        assert (int(shown["tokensIn"]), int(shown["tokensOut"])) == (tokens_in, tokens_out), name
        assert float(shown["cost"]) == pytest.approx(usd), name
    failed = page.locator(f'#tree tr[data-span-id="{hex_id(sent.spans["execute_tool book_hotel"])}"]')
    assert "error" in failed.get_attribute("class") and "hotel API returned 503" in failed.inner_text()
    assert "400 ms" in failed.inner_text()
    root_text = page.locator(f'#tree tr[data-span-id="{hex_id(sent.spans["invoke_agent planner"])}"]').inner_text()
    assert "3.00 s" in root_text and "2700 / 280" in root_text

    shot(page, "2-session")

    # Span detail: the long attribute is folded, and "show all" shows all 5000 characters.
    page.locator(f'#tree tr[data-span-id="{hex_id(sent.spans["execute_tool search_flights"])}"] button.row').focus()
    page.keyboard.press("Enter")
    page.locator("#detail h2").first.wait_for()
    toggle = page.get_by_role("button", name="show all 5000 characters")
    toggle.focus()
    page.keyboard.press("Enter")
    assert "x" * 5000 in page.locator("#detail").inner_text()
    shot(page, "2b-span-detail-unfolded")


def test_replay_steps_through_spans_and_shows_the_conversation(explorer, page) -> None:
    _, api, sent = explorer
    page.goto(f"{api.url}/#/replay/{SESSION}")
    page.locator("#steps").wait_for()
    in_start_order = sorted(sent.spans.values(), key=lambda s: s.start_time)
    active = lambda: page.locator("#steps li.active").get_attribute("data-span-id")  # noqa: E731
    assert active() == hex_id(in_start_order[0])
    assert page.locator("#step-counter").inner_text() == "Step 1 of 5"
    page.keyboard.press("Enter")  # focus starts on "Next"
    assert active() == hex_id(in_start_order[1])
    chat = page.locator("#chat").inner_text()
    assert "Plan a trip to Lisbon" in chat and "search_flights" in chat
    page.locator("#next").press("Enter")
    page.locator("#next").press("Enter")
    assert active() == hex_id(sent.spans["execute_tool book_hotel"])
    assert "hotel API returned 503" in page.locator("#current").inner_text()
    page.locator("#prev").click()
    assert active() == hex_id(sent.spans["execute_tool search_flights"])
    # Play at 4x runs to the last step, then stops by itself.
    page.locator("#speed").select_option("4")
    page.locator("#play").click()
    page.wait_for_function("() => document.querySelector('#step-counter').textContent === 'Step 5 of 5'")
    page.wait_for_function("() => document.querySelector('#play').textContent === 'Play'")
    assert "the hotel failed" in page.locator("#chat").inner_text()
    shot(page, "3-replay")


def test_trigger_opens_its_example_span_and_safety_shows_the_breaker_with_its_cause(explorer, page) -> None:
    _, api, sent = explorer
    page.goto(f"{api.url}/#/triggers")
    row = page.locator('#triggers tr[data-kind="error_rate_spike"]').first
    row.wait_for()
    text = row.inner_text()
    assert "service=checkout-agent" in text and " vs " in text
    shot(page, "4-triggers")
    example = row.get_by_role("link").first
    example.focus()
    page.keyboard.press("Enter")
    page.locator("#tree tr.selected").wait_for()
    selected = page.locator("#tree tr.selected").get_attribute("data-span-id")
    assert f"#/session/{CHECKOUT}" in page.url and selected
    trace_of_selected = api.get(f"/api/sessions/{CHECKOUT}")["spans"]
    assert {s["trace_id"] for s in trace_of_selected if s["span_id"] == selected} <= sent.checkout_traces
    page.locator("#detail h2").first.wait_for()
    shot(page, "5-trigger-example")

    page.get_by_role("link", name="Safety").click()
    breaker = page.locator('#current tr[data-family="breaker"][data-target="checkout_api"]')
    breaker.wait_for()
    assert "error_rate_spike" in breaker.inner_text() and "checkout-agent" in breaker.inner_text()
    opened = page.locator('#decisions tr[data-action="breaker_open"]').first
    assert "checkout_api" in opened.inner_text() and "error_rate_spike" in opened.inner_text()
    assert "threshold" in opened.inner_text()
    shot(page, "6-safety")
    opened.get_by_role("link", name="error_rate_spike").click()
    page.locator("#triggers tr.selected").wait_for()
    assert page.locator("#triggers tr.selected").get_attribute("data-kind") == "error_rate_spike"


def test_agent_graph_shows_edges_with_calls_and_errors(explorer, page) -> None:
    _, api, sent = explorer
    page.goto(f"{api.url}/#/safety")
    page.locator("#current").wait_for()
    link = page.get_by_role("link", name="Agent graph")
    link.focus()
    page.keyboard.press("Enter")
    edge = page.locator('#edges tr[data-source="agent:checkout"][data-target="http:payments.internal"]')
    edge.wait_for()
    assert edge.locator("td").all_inner_texts()[2:] == ["30", str(sent.checkout_errors), "50.0 %"]
    assert page.locator("svg text.node-label", has_text="book_hotel").count() == 1
    shot(page, "7-graph")


def test_live_tail_lists_a_services_spans(explorer, page) -> None:
    _, api, sent = explorer
    page.goto(f"{api.url}/#/tail?service=checkout-agent")
    page.wait_for_function("() => document.querySelectorAll('#tail tbody tr').length > 0")
    shown = page.locator("#tail tbody tr").evaluate_all("rows => rows.map(r => r.dataset.spanId)")
    assert len(shown) == sent.checkout_spans  # the whole session started in the last 5 minutes
    page.locator("#tail-pause").click()
    assert page.locator("#tail-pause").inner_text() == "Resume"
    shot(page, "8-tail")
