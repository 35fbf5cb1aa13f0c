"""``tierroute serve``: the HTTP routing service, or the OpenAI-compatible proxy with ``--proxy``; its
options (connection limits included) and the proxy's automatic outcome signal (``--schema-feedback``).
Part of the serving command group (:mod:`tierroute.cli.serving` registers it).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from tierroute.cli.options import add_tracking_option, bundle_store
from tierroute.errors import ConfigError

if TYPE_CHECKING:  # the serve extra's modules load when the command runs
    from tierroute.serving.http import ServiceConfig
    from tierroute.serving.proxy import ProxyConfig

__all__ = ["DEFAULT_MAX_CONNECTIONS", "add_serve_command", "cmd_serve", "schema_quality"]

DEFAULT_MAX_CONNECTIONS = 1024


def add_serve_command(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the HTTP routing service (or the OpenAI-compatible proxy)")
    _add_service_options(serve)
    _add_router_options(serve)
    _add_log_options(serve)
    _add_proxy_options(serve)
    _add_connection_limits(serve.add_argument_group("connection limits"))
    add_tracking_option(serve, "a models:/ bundle is read from")


def _add_service_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--bundle",
        default=None,
        metavar="DIR|models:/URI",
        help="the bundle to serve (without it, or if it cannot be served, the heuristic tree answers)",
    )
    serve.add_argument(
        "--proxy",
        default=None,
        metavar="CATALOGUE.toml",
        help="also proxy POST /v1/chat/completions to the chosen candidate's base_url (OpenAI-compatible)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--token-env", default=None, metavar="VAR", help="require 'Authorization: Bearer $VAR' on every endpoint but /healthz"
    )
    serve.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES", help="largest request body (default 1 MiB)")
    serve.add_argument("--max-batch", type=int, default=1000, metavar="N", help="most requests per batch call (default 1000)")


def _add_router_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--deadline-ms",
        type=float,
        default=50.0,
        metavar="MS",
        help="a learned decision slower than this is replaced by the tree's (default 50)",
    )
    serve.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="below this P(correct) for the chosen model, the tree decides (default off)",
    )
    serve.add_argument("--threads", type=int, default=1, metavar="N", help="onnxruntime intra-op threads (default 1)")
    serve.add_argument(
        "--explore",
        type=float,
        default=0.0,
        metavar="EPSILON",
        help="send this share of learned decisions to a uniformly drawn candidate (default 0)",
    )
    serve.add_argument("--explore-seed", type=int, default=None, metavar="N", help="seed of the exploration draws")
    serve.add_argument(
        "--objective",
        default=None,
        metavar="OBJECTIVE",
        help="operating point on the bundle's knob curve: match-best, match-heuristic, max-accuracy or "
        "budget=USD_PER_QUERY (default: the bundle's; a request's 'objective' field or the proxy's "
        "x-tierroute-objective header overrides it)",
    )


def _add_log_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--log-prompts", action="store_true", help="log prompt text (default: a sha256 prefix only)")
    serve.add_argument(
        "--decision-log",
        default=None,
        metavar="FILE.jsonl",
        help="append every decision (propensity, probabilities, bundle id) for retraining",
    )
    serve.add_argument(
        "--log-features",
        action="store_true",
        help="the decision log also records each request's feature vector and FeatureSpec fingerprint",
    )
    serve.add_argument(
        "--feedback-log",
        default=None,
        metavar="FILE.jsonl",
        help="serve POST /v1/feedback, appending to this log (join it with `tierroute outcomes`); "
        "refused items go to FILE.jsonl.refused.jsonl",
    )
    serve.add_argument(
        "--no-feedback-id-check",
        dest="feedback_check_ids",
        action="store_false",
        help="accept feedback for any request id (replicas behind a load balancer without affinity; "
        "the join still sorts unknown ids and replays); default: refuse ids this process did not "
        "decide, and a changed grade from the same source",
    )
    serve.add_argument(
        "--feedback-id-capacity",
        type=int,
        default=200_000,
        metavar="N",
        help="feedback may name the ids of the last N decisions (default 200,000)",
    )


def _add_proxy_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--schema-feedback",
        action="store_true",
        help="proxy: check each answer against the request's output schema and log it as feedback (source 'schema')",
    )
    serve.add_argument(
        "--judge",
        default=None,
        metavar="MODEL",
        help="proxy: grade a sample of routed answers with this catalogue model (feedback source 'judge')",
    )
    serve.add_argument("--judge-sample", type=float, default=0.02, metavar="P", help="proxy: share of calls graded (default 0.02)")
    serve.add_argument(
        "--judge-budget",
        type=float,
        default=1.0,
        metavar="USD",
        help="proxy: the most the judge may spend while the service runs (default 1 USD)",
    )
    serve.add_argument("--upstream-timeout", type=float, default=60.0, metavar="S", help="proxy: seconds per upstream call")
    serve.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        metavar="N",
        help="proxy: candidates tried per call (the chosen one, then up) before answering 502 (default 3)",
    )


def _add_connection_limits(limits: Any) -> None:
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a request must arrive whole (headers and body) within this; slower clients are disconnected, with 408 (default 10)",
    )
    limits.add_argument(
        "--keep-alive", type=float, default=5.0, metavar="S", help="close idle keep-alive connections after this (default 5)"
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help=f"open connections beyond this get 503 (default {DEFAULT_MAX_CONNECTIONS:,}, or fewer when ulimit -n cannot fit them)",
    )
    limits.add_argument(
        "--max-header-bytes",
        type=int,
        default=16 * 1024,
        metavar="BYTES",
        help="a request head (line + headers) still incomplete past this gets 400 (default 16 KiB)",
    )
    limits.add_argument(
        "--max-json-depth", type=int, default=128, metavar="N", help="bodies nesting arrays/objects deeper get 400 (default 128)"
    )
    limits.add_argument("--backlog", type=int, default=2048, metavar="N", help="listen queue length (default 2048)")


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import logging
    import os

    try:
        import uvicorn  # noqa: F401 - checked here, used by serving.server

        from tierroute.serving.http import create_app
        from tierroute.serving.server import serve
    except ImportError:
        raise ConfigError(
            "serve needs the serving extras (starlette, uvicorn, httpx, prometheus-client). Install them: "
            "pip install 'tierroute[serve]' (or pip install -e '.[serve]' in a checkout)."
        ) from None
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise ConfigError(f"--token-env {args.token_env}: that environment variable is not set or empty. Export it first.")
    proxy = _proxy_config(args)
    config, warning = _service_config(args, token)
    app = create_app(config, proxy=proxy)
    router = app.state.holder.current
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if warning:
        print(warning, file=sys.stderr)
    if router.learned:
        print(f"serving bundle {router.bundle_id} on http://{args.host}:{args.port}", file=sys.stderr)
    else:
        print(
            f"warning: {router.unavailable} Serving the heuristic tree on http://{args.host}:{args.port} "
            f"(fallback {router.unavailable.code}).",
            file=sys.stderr,
        )
    serve(app, args.host, args.port)
    return 0


def _proxy_config(args: argparse.Namespace) -> ProxyConfig | None:
    """The proxy's settings (None without --proxy); ConfigError for proxy-only options without it."""
    if not args.proxy:
        if args.schema_feedback or args.judge:
            raise ConfigError("--schema-feedback and --judge need --proxy (only the proxy sees the answers). Pass --proxy CATALOGUE.toml.")
        return None
    from tierroute.serving.judge import JudgeConfig
    from tierroute.serving.proxy import ProxyConfig

    return ProxyConfig(
        catalogue=args.proxy,
        timeout_s=args.upstream_timeout,
        max_attempts=args.max_attempts,
        schema_check=schema_quality if args.schema_feedback else None,
        judge=JudgeConfig(args.judge, args.judge_sample, args.judge_budget) if args.judge else None,
    )


def _service_config(args: argparse.Namespace, token: str | None) -> tuple[ServiceConfig, str | None]:
    """(the ServiceConfig of these options, a warning when the open-file limit lowered --max-connections)."""
    from tierroute.serving.http import ServiceConfig
    from tierroute.serving.router import RouterConfig
    from tierroute.serving.server import fit_file_limit

    router_config = RouterConfig(
        intra_op_threads=args.threads,
        deadline_ms=args.deadline_ms,
        min_confidence=args.min_confidence,
        epsilon=args.explore,
        seed=args.explore_seed,
        objective=args.objective,
    )
    limits = dict(
        request_timeout_s=args.request_timeout,
        keep_alive_s=args.keep_alive,
        max_header_bytes=args.max_header_bytes,
        max_json_depth=args.max_json_depth,
        backlog=args.backlog,
    )
    wanted = DEFAULT_MAX_CONNECTIONS if args.max_connections is None else args.max_connections
    ServiceConfig(**limits, max_connections=wanted)  # check the limits before touching the open-file limit
    max_connections, warning = fit_file_limit(args.max_connections, DEFAULT_MAX_CONNECTIONS)
    config = ServiceConfig(
        bundle=args.bundle,
        router=router_config,
        token=token,
        max_body_bytes=args.max_body,
        max_batch=args.max_batch,
        log_prompts=args.log_prompts,
        tracking_uri=bundle_store(args),
        catalogue=args.proxy,
        decision_log=args.decision_log,
        max_connections=max_connections,
        feedback_log=args.feedback_log,
        log_features=args.log_features,
        feedback_check_ids=args.feedback_check_ids,
        feedback_id_capacity=args.feedback_id_capacity,
        **limits,
    )
    return config, warning


def schema_quality(text: str, output_schema: Any) -> float:
    """The proxy's automatic outcome signal (``--schema-feedback``): 1 when the answer is JSON
    that keeps the request's output schema, else 0 (the benchmark's json scorer, no reference)."""
    from tierroute.pipelines.benchmark.scorers.json_scorer import score_json

    return float(score_json(text, None, output_schema).quality)
