"""``mobileconv submit``, ``status`` and ``fetch``: the service from the command line.

``worker/cli.py`` owns the ``mobileconv`` parser and calls :func:`add_client_commands` to add
these subcommands and :func:`run_client_command` to run them. The server defaults to
``$MOBILECONV_URL`` or ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from service.client import ApiError, Client

DEFAULT_URL = "http://127.0.0.1:8000"
_BAR_WIDTH = 30


def add_client_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``submit``, ``status`` and ``fetch`` on the ``mobileconv`` subparsers."""
    submit = commands.add_parser(
        "submit",
        help="submit a model to a mobileconv service",
        description="Upload MODEL with a recipe; prints the job id (or waits with --wait).",
    )
    submit.add_argument("model", type=Path, help=".pt2, TorchScript, or state_dict file")
    submit.add_argument("--recipe", type=Path, help="recipe JSON file")
    submit.add_argument("--architecture", help="torchvision architecture of a state_dict")
    submit.add_argument("--input-shape", help="e.g. 1,3,224,224")
    submit.add_argument("--targets", help="pte,ptl (default both)")
    submit.add_argument("--calibration", type=Path, help=".npy/.npz calibration inputs")
    submit.add_argument("--evaluation", type=Path, help=".npz evaluation inputs (+ labels)")
    submit.add_argument("--idempotency-key", help="makes retrying the same submission safe")
    submit.add_argument("--wait", action="store_true", help="wait, then download to --out")
    submit.add_argument("--out", type=Path, default=Path("."), help="download directory")
    _add_common(submit)

    status = commands.add_parser(
        "status", help="show a job (or the newest jobs) on a mobileconv service"
    )
    status.add_argument("job_id", nargs="?", help="job id; omit to list the newest jobs")
    _add_common(status)

    fetch = commands.add_parser(
        "fetch",
        help="wait for a job with a progress bar and download its artifacts",
    )
    fetch.add_argument("job_id")
    fetch.add_argument("--out", type=Path, default=Path("."), help="download directory")
    fetch.add_argument("--timeout", type=float, default=3600, help="seconds to wait")
    _add_common(fetch)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("MOBILECONV_URL", DEFAULT_URL),
        help=f"service URL (default $MOBILECONV_URL or {DEFAULT_URL})",
    )
    parser.add_argument("--json", action="store_true", help="print the job document as JSON")


def run_client_command(args: argparse.Namespace) -> int:
    """Run ``submit``, ``status`` or ``fetch``; returns the process exit status."""
    client = Client(args.url)
    try:
        if args.command == "submit":
            return _submit(client, args)
        if args.command == "status":
            return _status(client, args)
        if args.command == "fetch":
            return _fetch(client, args.job_id, args.out, args.timeout, args.json)
    except ApiError as exc:
        field = f" [{exc.field}]" if exc.field else ""
        print(f"error: {exc.message}{field} ({exc.code})", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"error: unknown command {args.command!r}", file=sys.stderr)
    return 2


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    recipe: dict[str, Any] = json.loads(args.recipe.read_text()) if args.recipe else {}
    if args.architecture:
        recipe["architecture"] = args.architecture
    if args.input_shape:
        recipe["input_shape"] = [int(d) for d in args.input_shape.split(",")]
    if args.targets:
        recipe["targets"] = args.targets.split(",")
    return recipe


def _submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(
        args.model,
        _recipe(args),
        calibration=args.calibration,
        evaluation=args.evaluation,
        idempotency_key=args.idempotency_key,
    )
    if args.wait:
        print(f"submitted job {job['id']}", file=sys.stderr)
        return _fetch(client, job["id"], args.out, 3600, args.json)
    print(json.dumps(job, indent=2) if args.json else job["id"])
    return 0


def _status(client: Client, args: argparse.Namespace) -> int:
    if args.job_id is None:
        jobs = client.list()
        if args.json:
            print(json.dumps(jobs, indent=2))
        for job in [] if args.json else jobs:
            print(f"{job['id']}  {job['status']:<10} {job['stage']:<13} {job['created_at']}")
        return 0
    job = client.get(args.job_id)
    if args.json:
        print(json.dumps(job, indent=2))
        return 0
    print(f"job       {job['id']}\nstatus    {job['status']}\nstage     {job['stage']}")
    print(f"progress  {job['progress']:.0%}")
    if job["error"]:
        print(f"error     {job['error']['code']}: {job['error']['message']}")
    for artifact in job["artifacts"]:
        print(f"artifact  {artifact['name']} ({artifact['bytes']} bytes) {artifact['url']}")
    return 0 if job["status"] != "failed" else 1


def _fetch(client: Client, job_id: str, out: Path, timeout: float, as_json: bool) -> int:
    job = client.wait(job_id, timeout=timeout, on_progress=lambda j: _draw(j, sys.stderr))
    sys.stderr.write("\n")
    if job["status"] != "succeeded":
        error = job["error"] or {"code": job["status"], "message": f"The job {job['status']}."}
        print(
            f"job {job_id} {job['status']}: {error['message']} ({error['code']})", file=sys.stderr
        )
        return 1
    paths = client.download(job, out)
    if as_json:
        print(json.dumps(job, indent=2))
    for path in paths:
        print(path)
    return 0


def _draw(job: dict[str, Any], stream: TextIO) -> None:
    filled = int(job["progress"] * _BAR_WIDTH)
    bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
    stream.write(f"\r[{bar}] {job['progress']:4.0%} {job['status']:<9} {job['stage']:<13}")
    stream.flush()
