"""The web UI against the real stack: what an operator sees and does, checked in the emulator and the simulator."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
import pytest
from playwright.async_api import Locator, Page, expect
from sqlalchemy import select

from cml_cloud_manager.storage.models import EventRow

from .conftest import ARTIFACTS, FLEET_SIZE, TOKENS, Stack, screenshot

pytestmark = pytest.mark.e2e


def worker_named(stack: Stack, name: str) -> dict[str, Any]:
    return next(w for w in stack.get("/api/workers?limit=1000")["items"] if w["name"] == name)


def fleet_row(page: Page, worker: dict[str, Any]) -> Locator:
    return page.locator(f'#fleet tr[data-worker-id="{worker["id"]}"]')


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """Poll something that is not on the page (the database while no API is up)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{check.__name__} still false after {timeout}s"
        await asyncio.sleep(0.2)


def toast(page: Page, text: str) -> Locator:
    return page.locator(".toast", has_text=text)


def send(stack: Stack, method: str, path: str, body: Any) -> Any:
    """An admin's API call with a body (what the UI would send), for setting a scene."""
    headers = {"Authorization": f"Bearer {TOKENS['admin']}"}
    response = httpx.request(method, f"{stack.url}{path}", json=body, headers=headers, timeout=10)
    response.raise_for_status()
    return response.json()


async def test_the_fleet_appears_with_totals_filters_and_sorting(stack: Stack, page: Page) -> None:
    await page.goto(stack.url)
    await expect(page.locator("#live")).to_have_text("Live")
    rows = page.locator("#fleet tbody tr")
    await expect(rows).to_have_count(FLEET_SIZE)
    for worker in stack.get("/api/workers")["items"]:
        row = fleet_row(page, worker)
        await expect(row.locator('td[data-col="name"]')).to_have_text(worker["name"])
        await expect(row.locator('td[data-col="instance"]')).to_contain_text(worker["aws_instance_id"])
        await expect(row.locator('td[data-col="status"] .badge')).to_have_text(worker["status"])
        await expect(row.locator('td[data-col="service"] .badge')).to_have_text(worker["service_status"])
        await expect(row.locator('td[data-col="license"] .badge')).to_have_text(worker["license_status"])
        await expect(row.locator('td[data-col="labs"]')).to_have_text(str(worker["labs_count"]))
        # The sandbox runs with the idle-detection job switched off.
        await expect(row.locator('td[data-col="idle"]')).to_have_text("idle detection off")

    summary = stack.get("/api/workers/summary")
    for stat in ("running", "stopped", "failed"):
        await expect(page.locator(f'[data-stat="{stat}"] .stat-value')).to_have_text(str(summary[stat]))
    await expect(page.locator('[data-stat="estimated-cost"] .stat-value')).to_contain_text(
        f"{summary['hourly_cost_usd']:.2f}"
    )

    await page.get_by_label("Status", exact=True).select_option("stopped")
    await expect(rows).to_have_count(summary["stopped"])
    await page.get_by_label("Status", exact=True).select_option("")
    await page.get_by_label("Search", exact=True).fill("training")
    await expect(rows).to_have_count(2)
    some = stack.get("/api/workers")["items"][0]
    await page.get_by_label("Search", exact=True).fill(some["aws_instance_id"])
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-worker-id", some["id"])
    await page.get_by_label("Search", exact=True).fill("")
    await expect(rows).to_have_count(FLEET_SIZE)

    names = sorted(w["name"] for w in stack.get("/api/workers")["items"])
    await expect(rows.first.locator('td[data-col="name"]')).to_have_text(names[0])
    await page.get_by_role("button", name="Name").click()  # already sorted by name: now descending
    await expect(rows.first.locator('td[data-col="name"]')).to_have_text(names[-1])
    await expect(page.locator("th", has=page.get_by_role("button", name="Name"))).to_have_attribute(
        "aria-sort", "descending"
    )
    await page.get_by_role("button", name="Name").click()
    await screenshot(page, "fleet.png")


async def test_stop_then_start_from_the_ui_changes_ec2_and_updates_live(stack: Stack, page: Page) -> None:
    worker = worker_named(stack, "cml-dev-1")
    assert worker["status"] == "running"
    await page.goto(stack.url)
    await page.evaluate("window.stillTheSamePage = true")  # a reload would lose it
    row = fleet_row(page, worker)
    status = row.locator('td[data-col="status"] .badge')
    await expect(status).to_have_text("running")

    await row.get_by_role("button", name="Stop").click()
    await expect(toast(page, f"Stop {worker['name']}: done")).to_be_visible()
    await expect(status).to_have_text("stopped")
    assert stack.state(worker["aws_instance_id"]) == "stopped"

    await row.get_by_role("button", name="Start").click()
    # A worker process starting from cold (imports, migrations check, first ticks) can take a while on a busy CI box.
    await expect(toast(page, f"Start {worker['name']}: done")).to_be_visible(timeout=90_000)
    await expect(status).to_have_text("running")
    assert stack.state(worker["aws_instance_id"]) == "running"
    assert await page.evaluate("window.stillTheSamePage") is True


async def test_a_lab_started_from_the_ui_starts_on_the_cml_host(stack: Stack, page: Page) -> None:
    # Labs of the simulator are random: take one that can be started, on a worker no other test touches.
    worker, lab = next(
        (w, lab)
        for w in stack.get("/api/workers")["items"]
        if w["name"].startswith("cml-lab-east") and w["status"] == "running"
        for lab in stack.get(f"/api/workers/{w['id']}/labs")["items"]
        if lab["state"] in ("STOPPED", "DEFINED_ON_CORE")
    )
    # CML deletes only a wiped lab: a stopped one offers Wipe, the other destructive action, instead.
    destroy = "Delete" if lab["state"] == "DEFINED_ON_CORE" else "Wipe"
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(worker["name"])
    await expect(page.get_by_text(worker["ami_id"])).to_be_visible()
    row = page.locator(f'tr[data-lab-id="{lab["id"]}"]')
    state = row.locator('td[data-label="State"] .badge')
    await expect(state).to_have_text(lab["state"])

    # A destructive action names its target, starts on Cancel, and does nothing until confirmed.
    await row.get_by_role("button", name=destroy).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(lab["title"])
    await expect(dialog.get_by_role("button", name=f"{destroy} {lab['title']}")).to_be_visible()
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(row.get_by_role("button", name=destroy)).to_be_focused()

    await row.get_by_role("button", name="Start").click()
    await expect(toast(page, f"Start lab {lab['title']}: done")).to_be_visible()
    await expect(state).to_have_text("STARTED")
    host = stack.sim("GET", f"/hosts/{worker['aws_instance_id']}")
    assert next(item for item in host["labs"] if item["id"] == lab["cml_lab_id"])["state"] == "STARTED"
    timeline = page.locator(".timeline li")
    await expect(timeline.filter(has_text="lab.state.changed").first).to_contain_text(lab["title"])

    await expect(page.locator("figure.chart")).to_have_count(4)
    await expect(page.locator("figure.chart-cpu")).to_have_attribute("data-samples", re.compile(r"^([3-9]|\d{2,})$"))
    await expect(page.locator("figure.chart-cpu svg path.chart-line")).not_to_have_count(0)
    await screenshot(page, "worker.png")


async def test_idle_detection_can_be_switched_and_snoozed(stack: Stack, page: Page) -> None:
    worker = worker_named(stack, "cml-lab-east-2")
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    idle = page.get_by_role("region", name="Activity & idle detection")
    await idle.get_by_role("button", name="Disable idle detection").click()
    await expect(idle.get_by_role("button", name="Enable idle detection")).to_be_visible()
    await expect(idle).to_contain_text("disabled for this worker")
    assert stack.get(f"/api/workers/{worker['id']}")["idle_detection_enabled"] is False
    await idle.get_by_role("button", name="Enable idle detection").click()
    await expect(idle.get_by_role("button", name="Disable idle detection")).to_be_visible()

    await idle.get_by_label("Snooze for (minutes)").fill("90")
    await idle.get_by_role("button", name="Snooze").click()
    await expect(idle.locator("dt:text-is('Snoozed until') + dd time")).to_be_visible()
    snoozed = stack.get(f"/api/workers/{worker['id']}")["snoozed_until"]
    assert snoozed is not None
    # The event's data is JSON with a real time in it, which the timeline shows as a time.
    shown = await page.evaluate("iso => import('/static/format.js').then(format => format.when(iso))", snoozed)
    update = page.locator(".timeline li[data-type='worker.updated']").filter(has_text="snoozed_until")
    await expect(update.first).to_contain_text(f"snoozed_until: {shown}")


async def test_the_timeline_shows_nested_event_data_as_json(stack: Stack, page: Page) -> None:
    await page.goto(stack.url)
    await expect(page.locator("#live")).to_have_text("Live")
    text = await page.evaluate(
        """async () => {
        const { describe } = await import("/static/timeline.js");
        const line = document.createElement("span");
        const changes = { tags: { team: "net" }, detailed_monitoring: true, public_ip: null };
        line.append(describe({ type: "worker.updated", data: { name: "w", changes } }));
        return line.textContent;
    }"""
    )
    assert text == 'tags: {"team":"net"}, detailed_monitoring: true, public_ip: \u2013'  # a dash: no value


async def test_the_idle_countdown_follows_the_servers_rule(stack: Stack, page: Page) -> None:
    """idle.js mirrors activity/tasks.py should_stop(): the latest of activity, resume and launch, plus the
    timeout, but never before a snooze or the grace period after a resume ends."""
    await page.goto(stack.url)
    await expect(page.locator("#live")).to_have_text("Live")
    cases = await page.evaluate(
        """async () => {
        const { idleInfo } = await import("/static/idle.js");
        const now = Date.parse("2026-01-01T12:00:00Z");
        const config = { idle_timeout_minutes: 60, idle_snooze_minutes: 30, assumed: false };
        const at = (minutes) => new Date(now + minutes * 60000).toISOString();
        const base = { status: "running", idle_detection_enabled: true, launched_at: at(-300) };
        const info = (patch, jobEnabled = true) => idleInfo({ ...base, ...patch }, { config, jobEnabled, now }).text;
        return {
            counting: info({ last_activity_at: at(-20) }),
            due: info({ last_activity_at: at(-61) }),
            resumed: info({ last_resumed_at: at(-50) }),
            snoozed: info({ last_activity_at: at(-61), snoozed_until: at(45) }),
            off: info({ idle_detection_enabled: false }),
            job_off: info({}, false),
            stopped: info({ status: "stopped" }),
        };
    }"""
    )
    assert cases == {
        "counting": "stops in 40m",
        "due": "idle: stops at next check",
        "resumed": "stops in 10m",
        "snoozed": "stops in 45m (snoozed)",
        "off": "idle detection off",
        "job_off": "idle detection off",
        "stopped": "\u2013",  # an en dash: nothing to count down
    }


async def test_on_a_phone_in_the_dark_theme_by_keyboard(stack: Stack, page: Page) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(stack.url)
    rows = page.locator("#fleet tbody tr")
    await expect(rows).to_have_count(FLEET_SIZE)
    # The table turns into cards: no header row on screen, and each cell carries its column's name.
    await expect(page.locator("#fleet thead")).to_have_css("position", "absolute")
    await expect(rows.first).to_have_css("display", "block")
    await expect(rows.first.locator('td[data-col="status"]')).to_have_attribute("data-label", "EC2")

    theme = page.get_by_role("button", name=re.compile("^Theme"))
    await theme.click()  # system → light
    await theme.click()  # light → dark
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await page.reload()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await expect(page.locator("body")).to_have_css("background-color", "rgb(15, 19, 24)")
    await expect(rows).to_have_count(FLEET_SIZE)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "fleet-phone-dark.png", full_page=True)

    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    first = rows.first.locator("a.worker-link")
    await first.focus()
    name = await first.inner_text()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    await expect(page.get_by_role("heading", level=1)).to_be_focused()


async def test_jobs_page_runs_a_job_and_shows_the_worker_processes(stack: Stack, page: Page) -> None:
    await page.goto(f"{stack.url}/#/jobs")
    row = page.locator('.jobs-table tr[data-name="housekeeping"]')
    await expect(row).to_contain_text("Prune")
    await row.get_by_role("button", name="Run now").click()
    await expect(toast(page, "Run housekeeping: done")).to_be_visible()
    await expect(row.locator('td[data-label="Last run"] .badge')).to_have_text("success")
    process = stack.get("/api/health/details")["components"]["worker"]["processes"][0]["id"]
    await expect(page.locator(".processes-table")).to_contain_text(process)
    await expect(page.locator("#banner")).to_be_hidden()


async def test_jobs_page_shows_each_jobs_last_runs(stack: Stack, page: Page) -> None:
    await page.goto(f"{stack.url}/#/jobs")
    toggle = page.get_by_role("button", name="Last runs of housekeeping")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    # housekeeping is off in this stack: it runs only when asked, so its history grows only by our run.
    before = len(stack.get("/api/system/jobs/housekeeping/runs?limit=10")["items"])
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    history = page.locator("#runs-housekeeping")
    runs = history.locator(".runs-table tbody tr")
    if before:
        await expect(runs).to_have_count(before)
    else:
        await expect(history).to_contain_text("housekeeping has not run yet.")

    await page.locator('.jobs-table tr[data-name="housekeeping"]').get_by_role("button", name="Run now").click()
    await expect(runs).to_have_count(min(before + 1, 10))
    newest = runs.first
    await expect(newest.locator('td[data-label="Outcome"] .badge')).to_have_text("success")
    await expect(newest.locator('td[data-label="Trigger"]')).to_have_text("manual")
    await expect(newest.locator('td[data-label="Duration"]')).to_have_text(re.compile(r"^\d+(\.\d)? ?(ms|s)$"))
    run = stack.get("/api/system/jobs/housekeeping/runs?limit=1")["items"][0]
    await expect(newest.locator('td[data-label="Started"] time')).to_have_attribute(
        "datetime", re.compile("^" + re.escape(run["started_at"][:19]))
    )
    await expect(newest.locator('td[data-label="Summary"]')).to_contain_text(
        f"events pruned: {run['summary']['events_pruned']}"
    )
    # Scheduled runs say so.
    await page.get_by_role("button", name="Last runs of worker-metrics").click()
    await expect(page.locator("#runs-worker-metrics .runs-table tbody tr").first).to_contain_text("schedule")

    await toggle.click()
    await expect(history).to_have_count(0)
    await expect(toggle).to_have_attribute("aria-expanded", "false")


async def room(page: Page, table: str, timeout: float = 30) -> int:
    """Pixels the table could still grow (a longer id, a longer text) and fit its box; negative when part of it is
    already cut off. Measured in one go, since live updates replace tables; a table that is not there at the
    moment (no worker heartbeat seen on a busy machine, say) is waited for."""
    deadline = time.monotonic() + timeout
    while True:
        needed = await page.evaluate(
            """(selector) => {
                const table = document.querySelector(selector);
                if (!table) return null;
                table.style.inlineSize = "min-content";
                const needed = table.offsetWidth;
                table.style.removeProperty("inline-size");
                return table.closest(".table-wrap").clientWidth - needed;
            }""",
            table,
        )
        if needed is not None:
            return int(needed)
        assert time.monotonic() < deadline, f"no {table} on the page after {timeout}s"
        await asyncio.sleep(0.2)


async def page_overflow(page: Page) -> int:
    return int(await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


async def test_at_1440_px_the_fleet_table_fits(stack: Stack, page: Page) -> None:
    await page.set_viewport_size({"width": 1440, "height": 900})
    # The widest idle text: idle detection on, and a worker snoozed.
    worker = worker_named(stack, "cml-training-1")
    send(stack, "PUT", "/api/system/settings", {"values": {"jobs.idle-detection.enabled": True}})
    try:
        send(stack, "PUT", f"/api/workers/{worker['id']}/idle", {"snooze_minutes": 90})
        await page.goto(stack.url)
        idle = fleet_row(page, worker).locator('td[data-col="idle"]')
        await expect(idle).to_contain_text("(snoozed)")
        assert await room(page, "#fleet") >= 0
        assert await page_overflow(page) == 0
    finally:
        send(stack, "PUT", "/api/system/settings", {"values": {"jobs.idle-detection.enabled": None}})


async def test_at_1440_px_the_health_tables_fit(stack: Stack, page: Page) -> None:
    await page.set_viewport_size({"width": 1440, "height": 900})
    await page.goto(f"{stack.url}/#/jobs")
    await expect(page.locator(".replicas-table tbody tr")).not_to_have_count(0)
    await expect(page.locator(".processes-table tbody tr")).not_to_have_count(0)
    # Room for process ids 20 characters longer than this machine's (a Kubernetes pod name is): the replicas
    # table showed "LAST HEARTBEA" with the ids of a short host name.
    assert await room(page, ".replicas-table") >= 160
    assert await room(page, ".processes-table") >= 160
    assert await room(page, ".jobs-table") >= 0
    assert await page_overflow(page) == 0


async def test_ids_stay_whole_with_a_copy_button(stack: Stack, page: Page) -> None:
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    await page.set_viewport_size({"width": 1440, "height": 900})
    worker = worker_named(stack, "cml-lab-east-1")
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    aws = page.get_by_role("region", name="AWS", exact=True)
    ids = {
        "Instance": worker["aws_instance_id"],
        "AMI": worker["ami_id"],
        "Subnet": worker["details"]["subnet_id"],
        "VPC": worker["details"]["vpc_id"],
    }
    for term, value in ids.items():
        await expect(aws.locator(f"dt:text-is('{term}') + dd .id-text")).to_have_text(value)
    # Measured in one go: live updates re-render the panel, and a replaced element measures as nothing.
    shapes = await page.evaluate(
        """() => [...document.querySelectorAll("[aria-labelledby='panel-aws'] .id-text")].map((el) => {
            const range = document.createRange();
            range.selectNodeContents(el);
            return [el.textContent, range.getClientRects().length, el.scrollWidth - el.clientWidth];
        })"""
    )
    # One line box for each whole id (a break after "i-" makes two), and nothing cut off.
    measured = {text: (lines, cut) for text, lines, cut in shapes}
    assert {value: measured.get(value) for value in ids.values()} == {value: (1, 0) for value in ids.values()}

    instance = worker["aws_instance_id"]
    await aws.get_by_role("button", name=f"Copy instance id {instance}").click()
    await expect(toast(page, "Copied")).to_contain_text(instance)
    assert await page.evaluate("navigator.clipboard.readText()") == instance

    await page.goto(stack.url)
    await fleet_row(page, worker).get_by_role("button", name=f"Copy instance id {instance}").click()
    await expect(toast(page, "Copied").last).to_contain_text(instance)


def contrast(foreground: str, background: str, under: str) -> float:
    """WCAG contrast of a text colour on a (possibly translucent) background laid over `under`."""

    def channels(css: str) -> list[float]:
        values = [float(v) for v in re.findall(r"[\d.]+", css)]
        return values + [1.0] * (4 - len(values))

    *top, alpha = channels(background)
    base = channels(under)[:3]
    mixed = [alpha * t + (1 - alpha) * b for t, b in zip(top, base, strict=True)]

    def luminance(rgb: list[float]) -> float:
        linear = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted([luminance(channels(foreground)[:3]), luminance(mixed)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_theme_button_stays_legible_under_the_pointer(
    stack: Stack, page: Page, scheme: Literal["light", "dark"]
) -> None:
    await page.emulate_media(color_scheme=scheme)
    await page.goto(stack.url)
    await expect(page.locator("#live")).to_have_text("Live")
    theme = page.get_by_role("button", name=re.compile("^Theme"))
    await theme.hover()
    colours = await theme.evaluate(
        "el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor,"
        " getComputedStyle(el.closest('.topbar')).backgroundColor]"
    )
    assert contrast(*colours) >= 4.5, colours


async def test_the_sign_in_page_says_where_the_first_token_is(stack: Stack, anonymous_page: Page) -> None:
    await anonymous_page.goto(stack.url)
    login = anonymous_page.locator(".login")
    await expect(login.get_by_role("heading", name="Where do I get a token?")).to_be_visible()
    await expect(login).to_contain_text("writes an admin token to var/admin-token")
    await expect(login).to_contain_text("AUTH_ADMIN_TOKEN_FILE")
    await expect(login).to_contain_text("cml-cloud-manager token create --name alice --role operator")


async def test_cml_is_not_called_ready_while_it_does_not_answer(stack: Stack, page: Page) -> None:
    worker = worker_named(stack, "cml-training-1")
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    cml = page.get_by_role("region", name="CML", exact=True)
    service = cml.locator("dt:text-is('Service') + dd .badge")
    ready = cml.locator("dt:text-is('Ready') + dd")
    await expect(service).to_have_text("available")
    await expect(ready).to_have_text("yes")
    host = f"/hosts/{worker['aws_instance_id']}/config"
    stack.sim("PATCH", host, {"unreachable": True})
    try:
        await expect(service).to_have_text("unavailable")
        await expect(ready).to_have_text("no")
        assert stack.get(f"/api/workers/{worker['id']}")["cml_ready"] is False
    finally:
        stack.sim("PATCH", host, {"unreachable": False})
    # Back once the host is asked again (a host that failed is left alone for 30 s first).
    await expect(ready).to_have_text("yes", timeout=90_000)
    await expect(service).to_have_text("available")


ACTION_NAMES = re.compile(r"^(Start|Stop|Refresh|Terminate|Remove from fleet|New worker|Import|Run now|Delete|Wipe)$")


async def sign_in_with_the_form(page: Page, token: str) -> None:
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def test_roles_decide_the_buttons_and_forged_requests_are_refused(stack: Stack, anonymous_page: Page) -> None:
    page = anonymous_page
    worker = worker_named(stack, "cml-lab-east-2")
    await page.goto(stack.url)
    await expect(page.get_by_role("heading", name="Sign in to CML Cloud Manager")).to_be_visible()
    await sign_in_with_the_form(page, "not-a-token")
    await expect(page.locator(".login .form-error")).to_contain_text("not valid")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "login.png")

    await sign_in_with_the_form(page, TOKENS["viewer"])
    await expect(page.locator("#fleet tbody tr")).to_have_count(FLEET_SIZE)
    await expect(page.locator("#user")).to_contain_text("viewer")
    await expect(page.locator("main").get_by_role("button", name=ACTION_NAMES)).to_have_count(0)
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    await expect(page.locator('tr[data-lab-id] td[data-label="State"]').first).to_be_visible()
    await expect(page.locator("main").get_by_role("button", name=ACTION_NAMES)).to_have_count(0)
    await expect(page.get_by_label("Smart Licensing token")).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("idle detection"))).to_have_count(0)
    await page.goto(f"{stack.url}/#/jobs")
    await expect(page.locator(".jobs-table tbody tr")).to_have_count(5)
    await expect(page.get_by_role("button", name="Run now")).to_have_count(0)

    # The viewer's own session, by hand: refused without the CSRF header, and refused by role with it.
    stop_url = f"{stack.url}/api/workers/{worker['id']}/stop"
    forged = await page.request.post(stop_url)
    assert forged.status == 403, await forged.text()
    csrf = (await (await page.request.get(f"{stack.url}/auth/me")).json())["csrf_token"]
    by_role = await page.request.post(stop_url, headers={"X-CSRF-Token": csrf})
    assert by_role.status == 403 and "operator" in (await by_role.json())["detail"]

    await page.get_by_role("button", name="Sign out").click()
    await sign_in_with_the_form(page, TOKENS["operator"])
    await expect(page.locator("#user")).to_contain_text("operator")
    await page.get_by_role("link", name="Fleet", exact=True).click()
    row = fleet_row(page, worker)
    await expect(row.get_by_role("button", name="Stop")).to_be_visible()
    await expect(page.get_by_role("button", name="New worker")).to_have_count(0)
    # An operator may stop workers, but not through a request forged without the session's CSRF token.
    forged = await page.request.post(stop_url, headers={"X-CSRF-Token": "forged"})
    assert forged.status == 403 and "CSRF" in (await forged.json())["detail"]
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    await expect(page.get_by_role("button", name="Refresh", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Terminate")).to_have_count(0)
    await expect(page.get_by_role("button", name="Remove from fleet")).to_have_count(0)
    # Lab operations, deleting a lab included, are the operator's job.
    await expect(page.get_by_role("button", name="Delete").first).to_be_visible()
    assert stack.state(worker["aws_instance_id"]) == "running"


async def test_live_updates_survive_an_api_restart_without_losing_an_event(stack: Stack, page: Page) -> None:
    worker = worker_named(stack, "cml-training-1")
    assert worker["status"] == "running"
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    live = page.locator("#live")
    await expect(live).to_have_text("Live")
    await expect(page.locator(".timeline li").first).to_be_attached()

    stack.stop_api()
    await expect(live).to_have_text(re.compile("Reconnecting"))
    # While no API is up, the instance stops behind our back; the worker process notices and records events.
    stack.ec2().stop_instances(InstanceIds=[worker["aws_instance_id"]])

    async def stopped_event_recorded() -> bool:
        async with db.session(write=False) as session:
            rows = await session.scalars(
                select(EventRow).where(EventRow.worker_id == worker["id"], EventRow.type == "worker.status.updated")
            )
            return any(row.data.get("status") == "stopped" for row in rows)

    db = stack.database()
    try:
        await until(stopped_event_recorded)
    finally:
        await db.dispose()
    stack.stop_worker()  # nothing new from here on, and the UI must say it is read-only

    await stack.start_api()
    await expect(live).to_have_text("Live")
    await expect(page.get_by_text("EC2 stopped")).to_be_visible()
    banner = page.locator("#banner")
    await expect(banner).to_contain_text("no worker process is alive")
    # Not "read-only": an action is accepted and waits, as the next step shows.
    await expect(banner).not_to_contain_text("Read-only")
    await expect(banner).to_contain_text("actions wait in the queue until a worker starts")

    expected = [event["sequence"] for event in stack.get(f"/api/workers/{worker['id']}/events?limit=100")["items"]]
    await expect(page.locator(f'.timeline li[data-seq="{expected[0]}"]')).to_be_attached()
    shown = await page.locator(".timeline li").evaluate_all("items => items.map(li => Number(li.dataset.seq))")
    assert shown[: len(expected)] == expected

    # With no worker process, an action is accepted but waits; the UI says so, then reports the outcome.
    await page.locator(".actions").get_by_role("button", name="Start").click()
    await expect(toast(page, "no worker process is alive")).to_be_visible()
    await stack.start_worker()
    # Before the banner check: that waits for the next health poll, by which time a success toast may be gone.
    await expect(toast(page, f"Start {worker['name']}: done")).to_be_visible(timeout=60_000)
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(page.get_by_text("EC2 running")).to_be_visible()
    assert stack.state(worker["aws_instance_id"]) == "running"
