"""``python -m bench.inloop [REV ...]``: the CPU one request costs, measured in one event loop.

Load generators, routers and upstreams in processes of their own share the machine's cores, so
their figures move by a tenth from one run to the next. ``bench.inloop_scenario`` puts a raw
upstream, the router and a minimal client in one process and one loop and reads the process's
CPU time per request: the client's and the upstream's share is the same code for every tree,
so what differs between two trees is their routers' work, and it repeats within a few percent.
Each tree runs in its own process from its own root (REV from a temporary git worktree);
processes alternate, and the best round of each is kept.

Beside the router, the same load goes to bare aiohttp handlers (a fixed answer; a JSON
pass-through that forwards the body and parses and re-encodes both bodies), and from the client
to the upstream alone: the floor any aiohttp gateway starts from, and what the harness itself
costs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import Section
from bench.servers import fixed_embedding_body
from bench.versus import reference
from tests.support.processes import ROOT, base_env

SCENARIO = ROOT / "bench" / "inloop_scenario.py"
ROUTER = "router"


def _once(tree: Path, answer: Path, count: int, rounds: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, str(SCENARIO), str(count), str(rounds), str(answer)], cwd=tree,
                          env=base_env(PYTHONPATH=str(tree)), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"the scenario failed in {tree}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(revs: list[str], *, count: int = 2000, rounds: int = 3, repeats: int = 3) -> dict[str, dict[str, float]]:
    """``{label: {target: CPU µs per request}}`` for this checkout (label ``this checkout``) and each REV."""
    work = Path(tempfile.mkdtemp(prefix="maas-inloop-"))
    trees = {"this checkout": ROOT}
    answer = work / "answer.json"  # the upstream's one-vector answer, the same for every tree
    answer.write_bytes(fixed_embedding_body())
    try:
        for rev in revs:
            tree = work / rev.replace("/", "_")
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                           capture_output=True)
            trees[rev] = tree
        best: dict[str, dict[str, float]] = {label: {} for label in trees}
        for _ in range(repeats):
            for label, tree in trees.items():
                for target, us in _once(tree, answer, count, rounds).items():
                    best[label][target] = min(us, best[label].get(target, us))
        return best
    finally:
        for tree in list(trees.values())[1:]:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def table(best: dict[str, dict[str, float]]) -> tuple[list[str], list[list]]:
    labels = list(best)
    head = ["target", *(f"µs/request, {label}" for label in labels)]
    if len(labels) > 1:
        head += [f"this / {label}" for label in labels[1:]]
    rows = []
    for target in best[labels[0]]:
        values = [best[label].get(target) for label in labels]
        ratios = [values[0] / v if v else None for v in values[1:]]
        rows.append([target, *values, *ratios])
    return head, rows


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    """The report's section: this checkout and the reference revision, one loop each."""
    rev = reference()
    best = measure([rev], count=500 if quick else 2000, rounds=2 if quick else 3, repeats=1 if quick else 3)
    sec = Section("inloop", f"1c. CPU per request in one event loop: this checkout and {rev}",
                  notes=[f"`python -m bench.inloop {rev}`: router, raw upstream and client in one process "
                         "(bench/inloop_scenario.py); CPU time of the process per sequential request, the "
                         "client's and upstream's share included (the last row alone); best of the rounds."])
    head, rows = table(best)
    sec.table(head, rows)
    mine, theirs = best["this checkout"], best[rev]
    harness = mine["client and upstream alone"]
    sec.target(f"router CPU ≤ {rev}'s / 1.1", (mine[ROUTER] - harness) / ((theirs[ROUTER] - harness) / 1.1), 1.0,
               lower=True)
    return sec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inloop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revs", nargs="*", help=f"revisions to measure beside this checkout (default: {reference()})")
    parser.add_argument("--count", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per process")
    parser.add_argument("--repeats", type=int, default=3, help="processes per tree, alternating")
    args = parser.parse_args(argv)
    revs = args.revs or [reference()]
    head, rows = table(measure(revs, count=args.count, rounds=args.rounds, repeats=args.repeats))
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    trees = 1 + len(revs)
    for target, *figures in rows:
        cells = [f"{v:.1f}" for v in figures[:trees]] + [f"{v:.3f}" for v in figures[trees:]]
        print(f"| {target} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
