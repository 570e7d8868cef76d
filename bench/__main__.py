"""``python -m bench``: run the benchmark sections and write docs/benchmarks.md and .png."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.report import Section, load, render_chart, render_markdown, save
from tests.support.processes import ROOT

# name → module with run(work, quick=..., tool=...) -> Section | list[Section]
SECTIONS = {
    "overhead": "bench.overhead",
    "versus": "bench.versus",
    "inloop": "bench.inloop",
    "profile": "bench.profile",
    "embed": "bench.throughput",
    "rerank": "bench.rerank",
    "coalesce": "bench.coalesce",
    "growth": "bench.growth",
    "memory": "bench.memory",
    "tenants": "bench.tenants",
    "admission": "bench.admission",
    "cache": "bench.cache",
    "fronts": "bench.fronts",
    "batches": "bench.batches",
    "soak": "bench.soak",
}


def _run_section(name: str, work: Path, args: argparse.Namespace) -> list[Section]:
    started = time.monotonic()
    module = importlib.import_module(SECTIONS[name])
    try:
        out = module.run(work / name, quick=args.quick, tool=args.tool)
    except Exception as exc:  # one broken section must not lose the others' figures
        traceback.print_exc()
        out = Section(name, f"{name}: did not complete", notes=[f"Failed: {type(exc).__name__}: {exc}"])
    sections = out if isinstance(out, list) else [out]
    for s in sections:
        s.seconds = (time.monotonic() - started) / len(sections)
    print(f"[bench] {name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return sections


def _write(sections: list[Section], args: argparse.Namespace, started: float) -> None:
    order = {name: i for i, name in enumerate(SECTIONS)}
    sections = sorted(sections, key=lambda s: order.get(s.name, len(order)))  # the report's order, however run
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save(sections, out_dir / "benchmarks.json")
    chart = out_dir / "benchmarks.png"
    drawn = render_chart(sections, chart)
    # Without matplotlib (the bench extra) the chart of an earlier run stays: sections run now add none.
    md = render_markdown(sections, quick=args.quick, chart_name=chart.name if drawn or chart.exists() else "",
                         started=started)
    (out_dir / "benchmarks.md").write_text(md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, one repeat: a smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument("--tool", default="hey", choices=("hey", "wrk"), help="HTTP load generator")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where benchmarks.md/.png/.json go")
    parser.add_argument("--render-only", action="store_true", help="redraw the report from benchmarks.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.time()
    if args.render_only:
        _write(load(Path(args.out) / "benchmarks.json"), args, started)
        return 0
    names = [n for n in (args.only.split(",") if args.only else SECTIONS) if n]
    names = [n for n in names if n not in args.skip.split(",")]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    previous = {}
    if args.only and (Path(args.out) / "benchmarks.json").exists():
        # a partial run replaces its own sections and keeps the others' last figures
        previous = {s.name: s for s in load(Path(args.out) / "benchmarks.json")}
    work = Path(tempfile.mkdtemp(prefix="maas-bench-"))
    results: dict[str, Section] = dict(previous)
    try:
        for name in names:
            for s in _run_section(name, work, args):
                results[s.name] = s
            _write(list(results.values()), args, started)  # partial results survive a later failure
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"[bench] wrote {args.out}/benchmarks.md in {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
