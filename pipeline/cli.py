"""`agentdbg`: run, validate, components."""
from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from typing import TYPE_CHECKING

from pipeline.component import Kind
from pipeline.config.shipped import default_config
from pipeline.errors import ConfigErrors

if TYPE_CHECKING:
    from pipeline.config.resolve import ResolvedConfig

DEFAULT_CONFIG = default_config()  # the wheel's packaged copy, else the checkout's config/default.yaml


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentdbg", description="SutazAI Agent Debugger pipeline daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the daemon"), ("validate", "check the config and build the graph")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", action="append", metavar="FILE",
                         help="config file or 'yaml:a::b: value'; repeat to merge (later wins). "
                              f"Default: {DEFAULT_CONFIG}")
    components = sub.add_parser("components", help="list the component types this build knows, per kind")
    components.add_argument("--markdown", action="store_true", help="print the full config reference")
    _query_parser(sub)
    _explorer_parsers(sub)
    return parser


def _explorer_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--url", help="the explorer's address (default: $AGENTDBG_URL, else the config's explorer "
                                   "endpoint, else http://localhost:10207)")
    cmd.add_argument("--token", help="the explorer's bearer token (default: $AGENTDBG_EXPLORER_TOKEN)")
    cmd.add_argument("--config", action="append", metavar="FILE",
                     help=f"config whose explorer endpoint to use (default: {DEFAULT_CONFIG})")


def _explorer_parsers(sub: argparse._SubParsersAction) -> None:
    """Commands that ask the running daemon's explorer API (they never open the store directory)."""
    sessions = sub.add_parser("sessions", help="list sessions (spans, duration, tokens, cost, errors, triggers)")
    for flag, text in (("--service", "only sessions with this service"), ("--agent", "only sessions with this agent"),
                       ("--since", "start time, RFC 3339"), ("--until", "end time, RFC 3339"),
                       ("--min-cost", "at least this cost in USD")):
        sessions.add_argument(flag, default="", help=text)
    sessions.add_argument("--errors", action="store_true", help="only sessions with an error span")
    sessions.add_argument("--has-trigger", action="store_true", help="only sessions a trigger event points at")
    session = sub.add_parser("session", help="one session as a span tree with durations, tokens, cost and errors")
    session.add_argument("id", help="the session id (gen_ai.conversation.id, or a trace id)")
    triggers = sub.add_parser("triggers", help="trigger events with their example sessions and spans")
    triggers.add_argument("--kind", default="", help="only this trigger kind, e.g. error_rate_spike")
    decisions = sub.add_parser("decisions", help="safety decisions with their causes")
    forget = sub.add_parser("forget", help="erase a session's or a user's data from every table (admin token); "
                                           "the erasure is recorded in the audit table")
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--session", help="the session id (gen_ai.conversation.id / session.id, or a trace id)")
    who.add_argument("--user", help="the user id (user.id / enduser.id)")
    for cmd in (sessions, session, triggers, decisions, forget):
        _explorer_options(cmd)
        cmd.add_argument("--json", action="store_true", help="print the API's JSON")
        if cmd not in (session, forget):
            cmd.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")


def _query_parser(sub: argparse._SubParsersAction) -> None:
    query = sub.add_parser(
        "query", help="run SQL on the chdb exporter's data directory and print the result",
        description="Run SQL (e.g. SELECT ... FROM otel.otel_traces) on the data directory of the config's "
                    "chdb exporter, read-only. While the daemon runs its explorer (or with --url), the statement "
                    "runs in the daemon, read-only. Otherwise the directory is opened here: chDB allows one process "
                    "per directory, so stop the daemon first, or pass --snapshot to query a copy while it runs.")
    query.add_argument("sql", help='the SQL, e.g. "SELECT ServiceName, count() FROM otel.otel_traces GROUP BY 1"')
    query.add_argument("--config", action="append", metavar="FILE",
                       help=f"config whose chdb exporter's path to read (default: {DEFAULT_CONFIG})")
    query.add_argument("--path", metavar="DIR", help="the chdb data directory (instead of --config)")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="table (default), csv with a header, or json (an array of row objects)")
    query.add_argument("--snapshot", action="store_true",
                       help="query a copy of the directory (works while the daemon runs)")
    query.add_argument("--url", help="ask this explorer (default: $AGENTDBG_URL, else the config's explorer when the "
                                     "config runs it; then the statement runs read-only in the daemon)")
    query.add_argument("--token", help="the explorer's bearer token (default: $AGENTDBG_EXPLORER_TOKEN)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "components":
        return _components(args.markdown)
    sources = args.config or [DEFAULT_CONFIG]
    from pipeline.service import load_config

    if args.command not in ("run", "validate"):  # pipeline/commands/: resolved config, read once if needed
        from pipeline.commands import run

        args.config = sources
        return run(args.command, args, functools.cache(lambda: load_config(sources)))
    try:
        config = load_config(sources)
    except ConfigErrors as exc:
        print(f"invalid configuration ({len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}):",
              file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    if args.command == "validate":
        return _validate(config)
    return _run(sources, config)


def _validate(config: ResolvedConfig) -> int:
    from pipeline.graph import Graph

    try:
        Graph(config)
    except ConfigErrors as exc:
        print(f"invalid configuration ({len(exc.errors)} error(s)):", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    except Exception as exc:  # a factory's own checks
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 1
    print(f"configuration is valid: {len(config.pipelines)} pipeline(s)")
    return 0


def _run(sources: list[str], config: ResolvedConfig) -> int:
    from pipeline import workers
    from pipeline.service import Service

    if config.service.workers > 1 and workers.current() is None:
        return workers.supervise(sources, config)

    async def main_async() -> int:
        try:
            return await Service(sources, config).run()
        except ConfigErrors as exc:
            print(f"invalid configuration ({len(exc.errors)} error(s)):", file=sys.stderr)
            for error in exc.errors:
                print(f"  {error}", file=sys.stderr)
            return 1

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async())
    return uvloop.run(main_async())


def _components(as_markdown: bool = False) -> int:
    from pipeline.registry import factories

    if as_markdown:
        from pipeline.reference import markdown

        print(markdown(factories()), end="")
        return 0
    for kind, table in factories().items():
        print(f"{kind.section}:")
        for name, factory in sorted(table.items()):
            signals = ", ".join(sorted(s.value for s in factory.signals)) if kind != Kind.EXTENSION else "-"
            print(f"  {name:<16} {signals:<24} {factory.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
