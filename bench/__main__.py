"""``python -m bench [SECTION ...] [--quick]``: run benchmark sections and write the results.

Without a section every section runs, in the order of issue 6; a full run (no ``--quick``)
also writes ``docs/BENCHMARKS.md``. JSON lines of full-size runs go to ``bench/results/``;
quick runs, and the write-up of partial runs, go under ``var/bench/`` so they never overwrite
the committed document.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
import traceback
from pathlib import Path

from bench.context import ROOT, Context, Settings
from bench.record import Recorder

logger = logging.getLogger("bench")

SECTIONS = {
    "artifacts": "bench.artifacts",
    "pruning": "bench.pruning",
    "onnxruntime": "bench.ort",
    "overhead": "bench.overhead",
    "polling": "bench.polling",
    "throughput": "bench.throughput",
    "honesty": "bench.honesty",
    "profile": "bench.profiling",
}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"sections to run (default: all): {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny inputs and short windows: a smoke run of a few minutes")
    parser.add_argument("--write-from", type=Path, nargs="+", metavar="RESULTS_JSONL",
                        help="measure nothing: write the document again from a full run's "
                             "JSON lines; a later file's sections replace an earlier one's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; returns 1 when a section failed to run."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    # SIGTERM becomes SystemExit, so the services a section started are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.write_from is not None:
        return _rewrite(args.write_from)
    sections = args.sections or list(SECTIONS)
    full = not args.quick and sections == list(SECTIONS)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = ROOT / ("var/bench/results" if args.quick else "bench/results")
    recorder = Recorder(results / f"run-{stamp}.jsonl", quick=args.quick)
    ctx = Context(Settings.make(args.quick), recorder,
                  ROOT / "var/bench/work" / ("quick" if args.quick else "full"))

    failed = []
    for section in sections:
        command = f".venv/bin/python -m bench {section}" + (" --quick" if args.quick else "")
        recorder.begin(section, command)
        try:
            importlib.import_module(SECTIONS[section]).run(ctx)
        except Exception as exc:
            logger.exception("section %s failed", section)
            failed.append(section)
            recorder.end(section, error=f"{type(exc).__name__}: {exc}"[:500])
            traceback.print_exc()
            continue
        recorder.end(section)

    from bench import writeup

    doc = ROOT / ("docs/BENCHMARKS.md" if full else "var/bench/BENCHMARKS.md")
    writeup.write(doc, recorder, ctx.settings, full=full)
    logger.info("figures in %s, write-up in %s", recorder.path, doc)
    return 1 if failed else 0


def _rewrite(files: list[Path]) -> int:
    """Write docs/BENCHMARKS.md again from saved figures, measuring nothing."""
    import json

    from bench import writeup

    figures: dict[str, list[dict[str, object]]] = {}
    sections: dict[str, dict[str, object]] = {}
    for path in files:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            if row["kind"] == "section":
                sections[row["section"]] = row
                figures[row["section"]] = [r for r in rows if r["kind"] == "figure"
                                           and r["section"] == row["section"]]
    recorder = Recorder(files[-1].resolve(), quick=False, sources=[p.resolve() for p in files])
    for section in SECTIONS:
        if section in sections:
            recorder.sections[section] = sections[section]
            recorder.figures += figures[section]
    quick = any(figure["quick"] for figure in recorder.figures)
    doc = ROOT / ("var/bench/BENCHMARKS.md" if quick else "docs/BENCHMARKS.md")
    writeup.write(doc, recorder, Settings.make(quick), full=not quick)
    logger.info("write-up in %s, from %s", doc, ", ".join(map(str, files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
