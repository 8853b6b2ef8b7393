"""Terminal commands over the running daemon's explorer API: `agentdbg sessions`,
`session <id>`, `triggers`, `decisions`, `query` (read-only SQL) and `forget` (erasure, admin token).

They talk HTTP to the explorer (`--url`, else `$AGENTDBG_URL`, else the `explorer` endpoint
of the config, else http://localhost:10207), with `--token` / `$AGENTDBG_EXPLORER_TOKEN` as
the bearer token, from any directory. They never open the store directory: chDB allows one
process per directory, and that is the daemon.

`query` goes through the API when `--url` or `$AGENTDBG_URL` is given, or the config runs the
explorer (it is in `service::extensions`); the statement then runs read-only in the daemon's
engine. Otherwise, and with `--path` / `--snapshot`, it reads the directory itself as before
(query.py: the daemon must be stopped, or `--snapshot` copies the directory).

The config (for the explorer's endpoint) comes from pipeline/cli.py as a loader, read only when
no address is given; an unreadable config then just gives no address.
"""
from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import orjson

from pipeline.component import Kind
from pipeline.netaddr import split_host_port

if TYPE_CHECKING:
    from pipeline.config.resolve import ResolvedConfig

# The config as pipeline/cli.py hands it over: read on the first call (then cached); raises
# ConfigErrors (or OSError) when the config is bad.
ConfigLoader = Callable[[], "ResolvedConfig"]

DEFAULT_URL = "http://localhost:10207"


class ApiError(Exception):
    pass


# -- where the explorer is -----------------------------------------------------------------------

def explorer_from_config(load: ConfigLoader) -> tuple[str | None, bool]:
    """(the explorer's URL in the config or None, whether the config runs it)."""
    try:
        config = load()
    except Exception:  # noqa: BLE001 - an unreadable config just gives no address
        return None, False
    for cid, component in config.section(Kind.EXTENSION).items():
        if cid.type == "explorer":
            host, port = split_host_port(str(component.config.endpoint))  # type: ignore[attr-defined]
            host = "localhost" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
            return f"http://{host}:{port}", str(cid) in config.service.extensions
    return None, False


def resolve_url(args: Any, config: ConfigLoader) -> str:
    if getattr(args, "url", None):
        return args.url.rstrip("/")
    if os.environ.get("AGENTDBG_URL"):
        return os.environ["AGENTDBG_URL"].rstrip("/")
    found, _ = explorer_from_config(config)
    return (found or DEFAULT_URL).rstrip("/")


def _token(args: Any) -> str:
    return getattr(args, "token", None) or os.environ.get("AGENTDBG_EXPLORER_TOKEN", "")


def request(url: str, token: str, path: str, params: dict[str, Any] | None = None,
            body: dict[str, Any] | None = None) -> bytes:
    """One API call; ApiError with a sentence a user can act on."""
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v not in (None, "", False)})
    full = f"{url}{path}" + (f"?{query}" if query else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = orjson.dumps(body), "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(full, data=data, headers=headers), timeout=60) as answer:
            return answer.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace").strip()
        if exc.code == 401:
            raise ApiError(f"{url} needs the explorer's token: pass --token or set AGENTDBG_EXPLORER_TOKEN") from None
        raise ApiError(f"{exc.code} from {full}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach the explorer at {url} ({reason}): is the daemon running with the explorer "
                       "extension? Pass --url or set AGENTDBG_URL") from None


@dataclass(frozen=True)
class Api:
    """The explorer one command talks to."""

    url: str
    token: str

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return orjson.loads(request(self.url, self.token, path, params))

    def post(self, path: str, body: dict[str, Any]) -> bytes:
        return request(self.url, self.token, path, body=body)


# -- formatting ----------------------------------------------------------------------------------

def duration(ns: int) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns} ns"


def usd(value: float) -> str:
    return f"${value:.6f}" if value else "-"


def when(ns: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def table(headers: list[str], rows: list[list[str]], out: Any) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip(), file=out)


def subject(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


# -- commands ------------------------------------------------------------------------------------

def sessions(api: Api, args: Any, out: Any) -> None:
    params = {"service": args.service, "agent": args.agent, "since": args.since, "until": args.until,
              "errors": "1" if args.errors else "", "min_cost": args.min_cost,
              "has_trigger": "1" if args.has_trigger else "", "limit": args.limit}
    rows = api.get("/api/sessions", params)["sessions"]
    if args.json:
        out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table(["SESSION", "SERVICES", "AGENTS", "SPANS", "START (UTC)", "DURATION", "TOKENS IN/OUT", "COST", "ERRORS",
           "TRIGGERS"],
          [[r["session"], ",".join(r["services"]), ",".join(r["agents"]) or "-", str(r["spans"]), when(r["start_ns"]),
            duration(r["duration_ns"]), f"{r['tokens_in']}/{r['tokens_out']}", usd(r["cost"]), str(r["errors"]),
            str(r["triggers"])] for r in rows], out)


def session(api: Api, args: Any, out: Any) -> None:
    data = api.get(f"/api/sessions/{urllib.parse.quote(args.id, safe='')}")
    if args.json:
        out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    print(f"session {data['session']}: {data['span_count']} spans in {len(data['traces'])} trace(s), "
          f"{duration(data['duration_ns'])}, tokens {data['tokens_in']}/{data['tokens_out']}, "
          f"cost {usd(data['cost'])}, "
          f"{data['errors']} error(s); services {', '.join(data['services'])}", file=out)
    for line in tree_lines(data["spans"]):
        print(line, file=out)


def tree_lines(spans: list[dict[str, Any]]) -> list[str]:
    """The span tree, one line a span: kind, name, duration, tokens and cost of its subtree, error."""
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    roots = [s for s in spans if s["depth"] == 0]
    lines: list[str] = []
    stack = [(root, "", True, True) for root in reversed(roots)]
    while stack:
        span, prefix, last, is_root = stack.pop()
        branch = "" if is_root else ("└─ " if last else "├─ ")
        total = span["total"]
        parts = [f"{prefix}{branch}[{span['kind']}] {span['name']}", duration(span["duration_ns"])]
        if total["tokens_in"] or total["tokens_out"]:
            parts.append(f"tokens {total['tokens_in']}/{total['tokens_out']}")
        if total["cost"]:
            parts.append(usd(total["cost"]))
        if span["error"]:
            parts.append(f"ERROR: {span['status_message'] or 'status error'}")
        lines.append("  ".join(parts))
        kids = [by_id[(span["trace_id"], kid)] for kid in span["children"] if (span["trace_id"], kid) in by_id]
        child_prefix = prefix + ("" if is_root else ("   " if last else "│  "))
        for index, kid in reversed(list(enumerate(kids))):
            stack.append((kid, child_prefix, index == len(kids) - 1, False))
    return lines


def triggers(api: Api, args: Any, out: Any) -> None:
    events = api.get("/api/triggers", {"kind": args.kind, "limit": args.limit})["triggers"]
    if args.json:
        out.write(orjson.dumps(events, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table(["EMITTED (UTC)", "KIND", "SEVERITY", "STATUS", "SUBJECT", "OBSERVED/THRESHOLD", "EXAMPLES", "MESSAGE"],
          [[e.get("emitted_at", ""), e["kind"], e.get("severity", ""), e.get("status", ""), subject(e.get("subject")),
            f"{e.get('observed')}/{e.get('threshold')} {e.get('unit') or ''}".strip(),
            " ".join(f"{x['session']}:{x['span_id'] or x['trace_id']}" for x in e["example_spans"][:3]) or "-",
            e.get("message", "")] for e in events], out)


def decisions(api: Api, args: Any, out: Any) -> None:
    decided = api.get("/api/decisions", {"limit": args.limit})["decisions"]
    if args.json:
        out.write(orjson.dumps(decided, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    def cause(c: dict[str, Any]) -> str:
        observed = f" {c.get('observed')}/{c.get('threshold')}" if c.get("observed") is not None else ""
        return f"{c.get('kind', '')} on {c.get('subject_key', '')}{observed}"
    table(["DECIDED (UTC)", "ACTION", "TARGET", "CAUSE", "REASON"],
          [[d.get("decided_at", ""), d["action"], subject(d.get("target")), cause(d.get("cause") or {}),
            d.get("reason", "")] for d in decided], out)


def query(api: Api, args: Any, out: Any) -> None:
    data = api.post("/api/query", {"sql": args.sql, "format": args.format})
    out.write(data.decode())
    if data and not data.endswith(b"\n"):
        out.write("\n")
    out.flush()


def query_through_api(args: Any, config: ConfigLoader) -> bool:
    """Whether `agentdbg query` asks the daemon (see the module's docstring).

    Asked for an address (`--url`, `$AGENTDBG_URL`): always. Otherwise only when the config runs
    the explorer and something answers there: with the daemon stopped, the directory is free to
    open, which is what a user who stopped it expects."""
    if args.path or args.snapshot:
        return False
    if args.url or os.environ.get("AGENTDBG_URL"):
        return True
    url, runs = explorer_from_config(config)
    return runs and url is not None and _listening(url)


def _listening(url: str, timeout: float = 1.0) -> bool:
    parsed = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


def forget(api: Api, args: Any, out: Any) -> None:
    """Erase a session's or a user's data in the daemon (POST /api/forget, admin token)."""
    body = {"session": args.session} if args.session else {"user": args.user}
    body["requested_by"] = os.environ.get("USER", "")
    done = orjson.loads(api.post("/api/forget", body))
    if args.json:
        out.write(orjson.dumps(done, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    counts = ", ".join(f"{n} {table}" for table, n in done["deleted"].items())
    print(f"erased {done['target_key']}: {len(done['trace_ids'])} trace(s); rows deleted: {counts}; "
          f"audit record {done['id']}", file=out)


COMMANDS: dict[str, Callable[[Api, Any, Any], None]] = {
    "sessions": sessions, "session": session, "triggers": triggers, "decisions": decisions, "query": query,
    "forget": forget}


def main(name: str, args: Any, config: ConfigLoader) -> int:
    """Entry point of the commands (arguments parsed, config loader given, by pipeline/cli.py)."""
    try:
        COMMANDS[name](Api(resolve_url(args, config), _token(args)), args, sys.stdout)
    except ApiError as exc:
        print(f"agentdbg {name}: {exc}", file=sys.stderr)
        return 1
    return 0
