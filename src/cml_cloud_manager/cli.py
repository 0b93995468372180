"""`cml-cloud-manager`: one console script for every role."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from .config import ProcessRole, Settings, SettingsError, load_settings

DESCRIPTION = """\
CML Cloud Manager: control plane for Cisco Modeling Labs workers on AWS.

Roles:
  api      HTTP API, Server-Sent Events and web UI; runs no background jobs
  worker   scheduled jobs and queued commands; no public HTTP
  all      both in one process (rollback mode)
  up       api + worker as two child processes (add --sandbox for a local AWS emulator + CML simulator)
  migrate  apply database migrations
  sandbox  a local AWS emulator and/or CML simulator on their own (sandbox aws | cml | all)
  exclusions  instances removed from the fleet, which imports leave alone (exclusions list | lift)

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
    token_sub.add_parser("list", help="list tokens and their open browser sessions", description="list tokens")
    revoke = token_sub.add_parser(
        "revoke", help="revoke a token and end its browser sessions", description="revoke a token"
    )
    revoke.add_argument("token", metavar="NAME|ID", help="the token's name or id (see `token list`)")
    _sandbox_parser(sub)
    _exclusions_parser(sub)
    return parser


EXCLUSIONS = """\
"Remove from fleet" (DELETE /api/workers/{id}, or the worker page's button) stops managing a worker but leaves
its EC2 instance running. So that the next auto-import does not bring it back under a new id, the instance is
recorded as excluded: imports by AMI name skip it, and importing it by id is refused. Lift the exclusion to let
it be imported again (the next auto-import run will). The same as GET and DELETE /api/exclusions.
"""


def _exclusions_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    exclusions = sub.add_parser(
        "exclusions", help="list or lift exclusions from imports", description=EXCLUSIONS, formatter_class=raw
    )
    actions = exclusions.add_subparsers(dest="exclusions_command", metavar="ACTION", required=True)
    actions.add_parser(
        "list",
        help="instances removed from the fleet, newest first",
        description="List the excluded instances: id, region, the worker's name, who removed it and when.",
    )
    lift = actions.add_parser(
        "lift",
        help="let imports take an instance again",
        description="Lift the exclusion of an instance: the next auto-import (or an import by id) may import it.",
    )
    lift.add_argument("instance_id", metavar="INSTANCE_ID", help="the EC2 instance id, e.g. i-0123456789abcdef0")


SANDBOX = """\
Local stand-ins for AWS and CML on 127.0.0.1, to try CML Cloud Manager without either. Each runs until Ctrl+C.

  aws   the AWS emulator, seeded with a CML AMI and five instances; prints the settings that point the app at it
  cml   the CML simulator: every /hosts/<key>/ on it is a CML 2.9 controller (Cisco's virl2-client works too)
  all   both: each instance of the fleet is a CML host on the simulator; prints every setting to export

`up --sandbox` runs the same sandbox with api and worker as its children. With `sandbox all` you start the roles
yourself, each in its own shell (or a debugger), against one sandbox:

  cml-cloud-manager sandbox all     # shell 1: prints `export ...` lines
  cml-cloud-manager api             # shell 2, after pasting them: the API and UI on http://127.0.0.1:8000/
  cml-cloud-manager worker          # shell 3, after pasting them: jobs and commands (or `all` for both)
"""


def _sandbox_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    sandbox = sub.add_parser(
        "sandbox",
        help="run the AWS emulator and/or CML simulator on their own",
        description=SANDBOX,
        formatter_class=raw,
    )
    servers = sandbox.add_subparsers(dest="server", metavar="SERVER", required=True)
    aws = servers.add_parser(
        "aws",
        help="the AWS emulator with a demo fleet",
        description="Serve the AWS emulator (EC2 and CloudWatch) seeded with a CML AMI and five instances, and "
        "print the settings (AWS_ENDPOINT_URL, credentials, AMI pattern...) for api, worker or all. It has no "
        "CML hosts: use `sandbox all` for those.",
    )
    aws.add_argument("--port", type=int, default=5000, help="listen port on 127.0.0.1 (default 5000)")
    both = servers.add_parser(
        "all",
        help="the AWS emulator and the CML simulator together",
        description="Serve the AWS emulator with its demo fleet and the CML simulator, whose hosts are the fleet's "
        "instances, and print every setting to export for api, worker or all (a SQLite database under var/ "
        "included; it starts empty, as the emulator does).",
    )
    both.add_argument("--aws-port", type=int, default=5000, help="AWS emulator port on 127.0.0.1 (default 5000)")
    both.add_argument("--cml-port", type=int, default=9443, help="CML simulator port on 127.0.0.1 (default 9443)")
    cml = servers.add_parser(
        "cml",
        help="the CML simulator",
        description="Serve simulated CML 2.9 hosts: any /hosts/<key>/ is one, seeded from its key. Prints the base "
        "URL and credentials of the hosts listed in --hosts; the control API is under /_sim/.",
    )
    cml.add_argument("--port", type=int, default=9443, help="listen port on 127.0.0.1 (default 9443)")
    cml.add_argument(
        "--hosts", default="cml-1,cml-2", help="host keys to announce (any key works; default cml-1,cml-2)"
    )
    cml.add_argument("--username", default="admin", help="CML username every host accepts (default admin)")
    cml.add_argument("--password", default="admin", help="CML password every host accepts (default admin)")


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

        serve_api(settings, ProcessRole(command))
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
    if command == "token" and args.token_command == "create":
        return asyncio.run(_create_token(settings, args.name, args.role))
    if command == "token":
        return asyncio.run(_tokens(settings, args))
    if command == "sandbox":
        return _sandbox(args)
    if command == "exclusions":
        return asyncio.run(_exclusions(settings, args))
    raise AssertionError(command)


def _sandbox(args: argparse.Namespace) -> int:
    if args.server == "aws":
        from .sandbox.serve import serve_aws

        return serve_aws(args.port)
    if args.server == "all":
        from .sandbox.serve import serve_all

        return serve_all(args.aws_port, args.cml_port)
    from .cml.simulator import run_simulator

    hosts = [key.strip() for key in args.hosts.split(",") if key.strip()]
    try:
        run_simulator("127.0.0.1", args.port, hosts=hosts, username=args.username, password=args.password)
    except ValueError as exc:  # a host key it cannot serve
        print(f"cml-cloud-manager sandbox cml: {exc}", file=sys.stderr)
        return 2
    return 0


async def _migrate(settings: Settings) -> int:
    from .storage.db import Database
    from .storage.migrate import migrate

    db = Database(settings, unbounded=True)  # a migration may rewrite a large table
    try:
        print(await migrate(db))
    finally:
        await db.dispose()
    return 0


async def _create_token(settings: Settings, name: str, role: str) -> int:
    from sqlalchemy.exc import IntegrityError

    from .auth import tokens
    from .auth.roles import Role
    from .storage.db import Database
    from .storage.migrate import migrate

    db = Database(settings)
    try:
        await migrate(db, only_if_empty=True)
        value = await tokens.create(db, name=name, role=Role(role))
    except IntegrityError:
        print(f"cml-cloud-manager: a token named {name!r} already exists", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(value)
    print(f"({role} token for {name}; shown only now, stored as a hash)", file=sys.stderr)
    return 0


async def _tokens(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from .auth import tokens
    from .errors import AppError
    from .storage.db import Database
    from .storage.migrate import migrate

    file_tokens = tokens.load_file(Path(settings.auth_tokens_file)) if settings.auth_tokens_file else {}
    db = Database(settings, source="cml-cloud-manager/cli")
    try:
        await migrate(db, only_if_empty=True)
        if args.token_command == "revoke":
            revoked = await tokens.revoke(db, file_tokens, args.token, by="command line")
            ended = revoked.sessions_ended
            print(f"revoked {revoked.name} ({revoked.role}, id {revoked.id}); ended {ended} browser session(s)")
            return 0
        rows = [("ID", "NAME", "ROLE", "SOURCE", "CREATED", "SESSIONS")]
        for token in await tokens.list_tokens(db, file_tokens):
            created = token.created_at.strftime("%Y-%m-%d %H:%M") if token.created_at else "-"
            rows.append((token.id or "-", token.name, token.role, token.source, created, str(token.sessions)))
        _print_table(rows)
        return 0
    except AppError as exc:
        print(f"cml-cloud-manager: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as aligned columns, the first row the heading."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _exclusions(settings: Settings, args: argparse.Namespace) -> int:
    from .errors import AppError
    from .storage.db import Database
    from .storage.migrate import migrate
    from .web.paging import MAX_LIMIT
    from .workers import exclusions

    db = Database(settings, source="cml-cloud-manager/cli")
    try:
        await migrate(db, only_if_empty=True)
        if args.exclusions_command == "lift":
            async with db.session() as session:
                lifted = await exclusions.lift(session, args.instance_id, by="command line")
            print(f"lifted the exclusion of {lifted.aws_instance_id} ({lifted.name}); imports may take it again")
            return 0
        rows = [("INSTANCE", "REGION", "NAME", "EXCLUDED BY", "SINCE")]
        async with db.session(write=False) as session:
            while True:
                page = await exclusions.list_page(session, limit=MAX_LIMIT, offset=len(rows) - 1)
                for item in page.items:
                    since = item.created_at.strftime("%Y-%m-%d %H:%M")
                    rows.append((item.aws_instance_id, item.aws_region, item.name, item.excluded_by, since))
                if not page.items or len(rows) - 1 >= page.total:
                    break
        if len(rows) == 1:
            print("no instance is excluded from imports")
            return 0
        _print_table(rows)
        return 0
    except AppError as exc:
        print(f"cml-cloud-manager: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()


def run_role(role: str) -> None:
    """Entry for `python -m cml_cloud_manager.api_server` / `.background_worker`."""
    sys.exit(main([role, *sys.argv[1:]]))
