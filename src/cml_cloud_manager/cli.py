"""`cml-cloud-manager`: one console script for every role."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from .config import Role, Settings, SettingsError, load_settings

DESCRIPTION = """\
CML Cloud Manager: control plane for Cisco Modeling Labs workers on AWS.

Roles:
  api      HTTP API, Server-Sent Events and web UI; runs no background jobs
  worker   scheduled jobs and queued commands; no public HTTP
  all      both in one process (rollback mode)
  up       api + worker as two child processes (add --sandbox for a local AWS emulator + CML simulator)
  migrate  apply database migrations

Settings come from the environment and .env (see README: Settings). Without a sub-command, WORKER_MODE
(api|worker|all) selects the role, as in the Docker image.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cml-cloud-manager",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("api", "run the API server (no background jobs)"),
        ("all", "run API + worker in one process"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--host", help="listen address (default: APP_HOST, 127.0.0.1)")
        p.add_argument("--port", type=int, help="listen port (default: APP_PORT, 8000)")
    worker = sub.add_parser("worker", help="run the background worker", description="run the background worker")
    worker.add_argument("--health-port", type=int, help="serve /health and /metrics on this port for probes")
    up = sub.add_parser("up", help="run api + worker as two processes", description="run api + worker together")
    up.add_argument("--sandbox", action="store_true", help="also start a local AWS emulator and CML simulator")
    up.add_argument("--port", type=int, help="API port (default: APP_PORT, 8000)")
    sub.add_parser("migrate", help="apply database migrations", description="apply database migrations")
    token = sub.add_parser("token", help="manage API tokens (AUTH_MODE=token)", description="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_sub.add_parser("create", help="create a token and print it once", description="create a token")
    create.add_argument("--name", required=True, help="who the token is for, e.g. alice or ci")
    create.add_argument("--role", required=True, choices=["viewer", "operator", "admin"], help="its role")
    sandbox = sub.add_parser("sandbox", help="run one sandbox server on its own", description="sandbox servers")
    servers = sandbox.add_subparsers(dest="server", metavar="SERVER", required=True)
    cml = servers.add_parser("cml", help="the CML simulator", description="serve simulated CML hosts")
    cml.add_argument("--port", type=int, default=9443, help="listen port on 127.0.0.1 (default 9443)")
    cml.add_argument(
        "--hosts", default="cml-1,cml-2", help="host keys to announce (any key works; default cml-1,cml-2)"
    )
    cml.add_argument("--username", default="admin", help="CML username every host accepts (default admin)")
    cml.add_argument("--password", default="admin", help="CML password every host accepts (default admin)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "host", None):
        overrides["app_host"] = args.host
    if getattr(args, "port", None):
        overrides["app_port"] = args.port
    return load_settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"cml-cloud-manager: {exc}", file=sys.stderr)
        return 2
    command = args.command or (settings.worker_mode.value if settings.worker_mode else None)
    if command is None:
        parser.print_help()
        return 2
    from . import logs

    logs.configure(settings, command)
    try:
        return _run(command, args, settings)
    except KeyboardInterrupt:
        return 130


def _run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    if command in ("api", "all"):
        from .apps.server import serve_api

        serve_api(settings, Role(command))
        return 0
    if command == "worker":
        from .apps.worker import serve_worker

        asyncio.run(serve_worker(settings, health_port=getattr(args, "health_port", None)))
        return 0
    if command == "migrate":
        return asyncio.run(_migrate(settings))
    if command == "up" and args.sandbox:
        from .sandbox.run import run_sandbox

        return run_sandbox(settings)
    if command == "up":
        from .apps.supervisor import up

        return up(settings)
    if command == "token":
        return asyncio.run(_create_token(settings, args.name, args.role))
    if command == "sandbox":
        from .cml.simulator import run_simulator

        hosts = [key.strip() for key in args.hosts.split(",") if key.strip()]
        run_simulator("127.0.0.1", args.port, hosts=hosts, username=args.username, password=args.password)
        return 0
    raise AssertionError(command)


async def _migrate(settings: Settings) -> int:
    from .storage.db import Database
    from .storage.migrate import migrate

    db = Database(settings)
    try:
        print(await migrate(db))
    finally:
        await db.dispose()
    return 0


async def _create_token(settings: Settings, name: str, role: str) -> int:
    from sqlalchemy.exc import IntegrityError

    from .auth import tokens
    from .auth.roles import Role as AccessRole
    from .storage.db import Database
    from .storage.migrate import migrate

    db = Database(settings)
    try:
        await migrate(db, only_if_empty=True)
        value = await tokens.create(db, name=name, role=AccessRole(role))
    except IntegrityError:
        print(f"cml-cloud-manager: a token named {name!r} already exists", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(value)
    print(f"({role} token for {name}; shown only now, stored as a hash)", file=sys.stderr)
    return 0


def run_role(role: str) -> None:
    """Entry for `python -m cml_cloud_manager.api_server` / `.background_worker`."""
    sys.exit(main([role, *sys.argv[1:]]))
