"""Removing a worker from the fleet in the UI excludes its instance from imports; the fleet page lists the
exclusions, and lifting one there lets auto-import bring the instance back. A module of its own: its stack loses a
worker for a while, which the other UI tests must not see."""

from __future__ import annotations

from datetime import datetime

import pytest
from playwright.async_api import Page, expect

from .conftest import Stack
from .test_fleet_ui import toast, until, worker_named

pytestmark = pytest.mark.e2e


async def test_remove_from_fleet_sticks_until_the_exclusion_is_lifted(stack: Stack, page: Page) -> None:
    worker = worker_named(stack, "cml-training-2")
    instance_id = worker["aws_instance_id"]
    await page.goto(f"{stack.url}/#/workers/{worker['id']}")
    await page.get_by_role("button", name="Remove from fleet").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("auto-import leaves it alone until you lift its exclusion")
    await dialog.get_by_role("button", name=f"Remove {worker['name']}").click()
    await expect(toast(page, f"{worker['name']} removed from the fleet")).to_be_visible()

    await page.goto(stack.url)
    section = page.locator("#exclusions")
    await expect(section).to_be_visible()
    await expect(section.locator("summary")).to_have_text("Excluded from imports (1)")
    await section.locator("summary").click()
    row = section.locator(f'tr[data-instance="{instance_id}"]')
    await expect(row).to_contain_text(worker["name"])
    await expect(row.locator('td[data-label="Removed by"]')).to_have_text("ui-admin")

    # auto-import runs every 2 s: one that started after the removal has finished and left the instance out.
    removed_at = datetime.fromisoformat(stack.get("/api/exclusions")["items"][0]["created_at"])

    async def a_later_run_finished() -> bool:
        runs = stack.get("/api/system/jobs/auto-import/runs?limit=1")["items"]
        later = bool(runs) and datetime.fromisoformat(runs[0]["started_at"]) > removed_at
        return later and runs[0]["finished_at"] is not None

    await until(a_later_run_finished)
    fleet_rows = page.locator("#fleet tbody tr", has_text=worker["name"])
    await expect(fleet_rows).to_have_count(0)

    await row.get_by_role("button", name="Lift").click()
    await page.get_by_role("dialog").get_by_role("button", name="Lift").click()
    await expect(toast(page, f"{instance_id} may be imported again")).to_be_visible()
    await expect(section).to_be_hidden()
    # The next auto-import takes the instance in again, under a new id; the fleet shows it live.
    await expect(fleet_rows).to_have_count(1)
    assert worker_named(stack, worker["name"])["id"] != worker["id"]
