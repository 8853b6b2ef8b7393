"""`agentdbg`: run, validate, components."""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pipeline.component import Kind
from pipeline.errors import ConfigErrors

DEFAULT_CONFIG = str(Path(__file__).resolve().parent.parent / "config" / "default.yaml")


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
    return parser


def _query_parser(sub: argparse._SubParsersAction) -> None:
    query = sub.add_parser(
        "query", help="run SQL on the chdb exporter's data directory and print the result",
        description="Run SQL (e.g. SELECT ... FROM otel.otel_traces) on the data directory of the config's "
                    "chdb exporter, read-only. chDB allows one process per directory: stop the daemon first, "
                    "or pass --snapshot to query a copy while it runs.")
    query.add_argument("sql", help='the SQL, e.g. "SELECT ServiceName, count() FROM otel.otel_traces GROUP BY 1"')
    query.add_argument("--config", action="append", metavar="FILE",
                       help=f"config whose chdb exporter's path to read (default: {DEFAULT_CONFIG})")
    query.add_argument("--path", metavar="DIR", help="the chdb data directory (instead of --config)")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="table (default), csv with a header, or json (an array of row objects)")
    query.add_argument("--snapshot", action="store_true",
                       help="query a copy of the directory (works while the daemon runs)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "components":
        return _components(args.markdown)
    if args.command == "query":
        from pipeline.registry import command

        args.config = args.config or [DEFAULT_CONFIG]
        return command("query")(args)
    sources = args.config or [DEFAULT_CONFIG]
    from pipeline.service import load_config

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


def _validate(config) -> int:
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


def _run(sources: list[str], config) -> int:
    from pipeline.service import Service

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
