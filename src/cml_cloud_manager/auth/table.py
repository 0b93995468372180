"""The endpoint → role table, read from the routes themselves (so docs/access.md cannot drift).

`python -m cml_cloud_manager.apps.access_page > docs/access.md` regenerates the page from the composed app.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from .guard import RoleRequirement, public

PUBLIC = "public"


def required(route: APIRoute) -> str | None:
    """The strictest role a route declares, "public", or None when it declares nothing (a bug)."""
    roles = [d.dependency.role for d in route.dependencies if isinstance(d.dependency, RoleRequirement)]
    if roles:
        return str(max(roles, key=lambda r: r.rank))
    if any(d.dependency is public for d in route.dependencies):
        return PUBLIC
    return None


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Routes on the app itself plus those of the routers it includes (their routes carry the prefix and the
    router-level dependencies already)."""
    own = [route for route in app.routes if isinstance(route, APIRoute)]
    return own + [route for router in app.state.routers for route in router.routes if isinstance(route, APIRoute)]


def role_table(app: FastAPI) -> list[tuple[str, str, str | None]]:
    rows = [
        (method, route.path, required(route)) for route in api_routes(app) for method in sorted(route.methods or ())
    ]
    return sorted(rows, key=lambda row: (row[1], row[0]))


def markdown(app: FastAPI) -> str:
    lines = [
        "# Access: which role each endpoint needs",
        "",
        "Roles are cumulative: `viewer` < `operator` < `admin`. `public` needs no login (health probes, metrics,",
        "the login flow, the UI shell). Generated from the routes by `python -m cml_cloud_manager.apps.access_page`;",
        "a test fails when this page and the code disagree, or when a route declares no role.",
        "",
        "| method | path | role |",
        "|---|---|---|",
    ]
    lines += [f"| {method} | `{path}` | {role} |" for method, path, role in role_table(app)]
    return "\n".join(lines) + "\n"
