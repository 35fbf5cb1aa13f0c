"""The serving-side commands of the ``tierroute`` CLI: ``export`` (a trained router -> a
RouterBundle), ``route`` (decide for requests, with a bundle or the heuristic tree) and ``serve``
(the HTTP service or the OpenAI-compatible proxy, in :mod:`tierroute.cli.serve`). :mod:`tierroute.cli`
registers them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tierroute.cli.options import add_tracking_option, bundle_store, tracking_store
from tierroute.cli.serve import DEFAULT_MAX_CONNECTIONS, add_serve_command, cmd_serve, schema_quality
from tierroute.errors import ConfigError, RequestError

__all__ = ["add_serving_commands", "SERVING_COMMANDS", "DEFAULT_MAX_CONNECTIONS", "schema_quality"]

_MAX_LINE_DEPTH = 128  # as the service's default --max-json-depth


def add_serving_commands(sub: Any) -> None:
    export = sub.add_parser("export", help="write a trained router as a RouterBundle (ONNX + manifest) for serving")
    export.add_argument("model", metavar="RUN_ID|DIR", help="a train run's folder, its model/ folder, or an MLflow run id")
    export.add_argument("--out", required=True, metavar="DIR", help="new (or empty) folder for the bundle")
    add_tracking_option(export, "a run id is read from")
    export.add_argument("--json", action="store_true", help="print one JSON object")

    conformance = sub.add_parser("conformance", help="check the Python runtime against a bundle's conformance vectors")
    conformance.add_argument("bundle", metavar="BUNDLE", help="a bundle folder")
    conformance.add_argument("--file", default=None, metavar="F", help="the conformance file (default BUNDLE/conformance.jsonl)")
    conformance.add_argument(
        "--write", action="store_true", help="write the vectors (into --file, default BUNDLE/conformance.jsonl) instead of checking them"
    )
    conformance.add_argument("--json", action="store_true", help="print one JSON object")

    route = sub.add_parser("route", help="decide the tier and model for requests")
    source = route.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", metavar="TEXT", help="one prompt to route")
    source.add_argument("--input", metavar="REQUESTS.jsonl", help="JSONL of {prompt|messages, output_schema, latency_sla_ms} ('-' = stdin)")
    route.add_argument("--schema", metavar="JSON", help="output schema (JSON) for --prompt, default for --input lines")
    route.add_argument("--sla", type=float, metavar="MS", help="latency SLA in ms for --prompt, default for --input lines")
    route.add_argument(
        "--bundle",
        default=None,
        metavar="DIR|models:/URI",
        help="route with this bundle's learned policy (falls back to the tree when it cannot answer)",
    )
    route.add_argument(
        "--policy",
        default=None,
        choices=["heuristic", "learned"],
        help="heuristic (default without --bundle) or learned (default with --bundle)",
    )
    route.add_argument(
        "--catalogue",
        default="article",
        metavar="FILE",
        help="candidate catalogue for the heuristic (default: built-in 'article'; a bundle brings its own)",
    )
    add_tracking_option(route, "a models:/ bundle is read from")
    route.add_argument("--decision-log", default=None, metavar="FILE.jsonl", help="also append each decision to this log")
    route.add_argument(
        "--objective",
        default=None,
        metavar="OBJECTIVE",
        help="learned operating point: match-best, match-heuristic, max-accuracy or budget=USD_PER_QUERY "
        "(default: the one the bundle was trained for)",
    )
    route.add_argument("--json", action="store_true", help="one JSON decision per request line")
    route.add_argument(
        "--explain",
        action="store_true",
        help="explain each decision: the chosen and runner-up models' top feature contributions, the "
        "policy's terms and the heuristic tree's path (JSON: an 'explanation' field)",
    )
    add_serve_command(sub)  # serve.py


def _request_lines(args: argparse.Namespace) -> Iterator[tuple[int, Any]]:
    defaults: dict[str, Any] = {}
    if args.schema is not None:
        defaults["output_schema"] = args.schema
    if args.sla is not None:
        defaults["latency_sla_ms"] = args.sla
    if args.prompt is not None:
        yield 1, {"prompt": args.prompt, **defaults}
        return
    try:
        stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read --input {args.input!r}: {exc.strerror}. Check the path.") from None
    with stream:
        try:
            yield from _parse_lines(stream, defaults)
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"--input {args.input!r} is not UTF-8 text ({exc.reason} at byte {exc.start}). "
                "Save it as UTF-8 JSONL, one request object per line."
            ) from None


def _parse_lines(stream: TextIO, defaults: dict[str, Any]) -> Iterator[tuple[int, Any]]:
    from tierroute.safejson import UnsafeJSONError
    from tierroute.safejson import loads as safe_loads

    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = safe_loads(line, max_depth=_MAX_LINE_DEPTH, where=f"line {number}")
        except UnsafeJSONError as exc:
            if exc.reason == "syntax":
                message = f"line {number} is not JSON ({exc.detail}); each line must be one request object."
            else:
                message = f"{exc} Each line must be one request object."
            yield number, RequestError(message)
            continue
        yield number, {**defaults, **item} if isinstance(item, dict) else item


def _cmd_route(args: argparse.Namespace, out: TextIO) -> int:
    kind = args.policy or ("learned" if args.bundle else "heuristic")
    if kind == "learned" and not args.bundle:
        raise ConfigError("--policy learned needs --bundle DIR (a folder from `tierroute export`) or a models:/ URI.")
    if args.decision_log and kind != "learned":
        raise ConfigError("--decision-log needs --bundle (the heuristic policy alone logs nothing to learn from).")
    log = None
    if args.decision_log:
        from tierroute.serving.decision_log import DecisionLog

        log = DecisionLog(args.decision_log)
    try:
        return _route_lines(args, out, kind, log)
    finally:
        if log is not None:
            log.close()


def _route_lines(args: argparse.Namespace, out: TextIO, kind: str, log: Any) -> int:
    from tierroute.models.catalogue import load_catalogue
    from tierroute.request import parse_request
    from tierroute.serving.decision import HeuristicPolicy
    from tierroute.serving.router import Router

    policy: Any
    if args.objective is not None and kind != "learned":
        raise ConfigError("--objective picks a learned operating point; pass --bundle DIR (or a models:/ URI) with it.")
    if kind == "learned":
        from tierroute.serving.router import RouterConfig

        policy = Router.load(args.bundle, RouterConfig(objective=args.objective), tracking_uri=bundle_store(args), decision_log=log)
        if not policy.learned:
            print(f"warning: {policy.unavailable} Deciding with the heuristic tree (fallback {policy.unavailable.code}).", file=sys.stderr)
    else:
        policy = HeuristicPolicy(catalogue=load_catalogue(args.catalogue))
    if args.prompt is not None:  # a bad --schema/--sla is an option mistake: one error line, exit 1
        try:
            parse_request({"prompt": args.prompt, "output_schema": args.schema, "latency_sla_ms": args.sla})
        except RequestError as exc:
            flag = "--sla" if "latency_sla_ms" in str(exc) else "--schema" if "output_schema" in str(exc) else "--prompt"
            raise ConfigError(f"{flag}: {exc}") from None
    failures = 0
    for number, item in _request_lines(args):
        request_id = item.get("id") if isinstance(item, dict) else None
        try:
            if isinstance(item, Exception):
                raise item
            decision = _decide(policy, item, kind, args.explain).to_dict()
        except RequestError as exc:
            failures += 1
            if args.json:
                print(json.dumps({"line": number, "id": request_id, "error": str(exc)}), file=out)
            else:
                print(f"line {number}: error: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"line": number, "id": request_id, **decision}, ensure_ascii=False), file=out)
        else:
            print(f"{decision['tier']}  {decision['model']}  [{decision['source']}] {decision['reason']}", file=out)
            if "explanation" in decision:
                from tierroute.serving.explain import summary

                print(summary(decision["explanation"]), file=out)
    return 2 if failures else 0


def _decide(policy: Any, item: Any, kind: str, explain: bool) -> Any:
    """One decision, explained when asked (the heuristic policy's: the tree's path)."""
    if not explain:
        return policy.route(item)
    if kind == "learned":
        return policy.route(item, explain=True)
    from tierroute.serving.explain import explain_heuristic

    return explain_heuristic(policy.route(item), policy.tree, policy.catalogue)


def _cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.models.export import export_bundle
    from tierroute.pipelines.training.tracking import load_router_from
    from tierroute.serving.conformance import write_conformance

    router = load_router_from(args.model, tracking_store(args))
    path = export_bundle(router, args.out)
    write_conformance(path)  # derived data beside the manifest (not in bundle_id): any runtime checks itself against it
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    if args.json:
        print(
            json.dumps(
                {
                    "schema_version": 1,
                    "bundle": str(path),
                    "bundle_id": manifest["bundle_id"],
                    "files": manifest["files"],
                    "candidates": manifest["candidates"],
                },
                indent=2,
            ),
            file=out,
        )
    else:
        print(
            f"bundle {manifest['bundle_id']} -> {path}/ ({len(manifest['files'])} files, "
            f"{len(manifest['candidates'])} candidates, policy {manifest['policy']['kind']})",
            file=out,
        )
    return 0


def _cmd_conformance(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 0 when the Python runtime matches every vector, 5 on any mismatch (1: the bundle or file is unusable)."""
    from tierroute.serving.conformance import check_conformance, write_conformance

    if args.write:
        path = write_conformance(args.bundle, args.file)
        print(json.dumps({"schema_version": 1, "written": str(path)}) if args.json else f"wrote {path}", file=out)
        return 0
    report = check_conformance(args.bundle, args.file)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary(), file=out)
    return 0 if report.ok else 5


SERVING_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "route": _cmd_route,
    "export": _cmd_export,
    "serve": cmd_serve,
    "conformance": _cmd_conformance,
}
