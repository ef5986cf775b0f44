"""Run every bad-input case of tests/badinput as a user would (a fresh ``metascan`` process per
case) and print how each ended, as a Markdown table and a JSON summary.

    python scripts/bad_input_sweep.py                     # this checkout
    python scripts/bad_input_sweep.py --src /tmp/old/src  # another version's code, same cases

Each case runs on its own copy of a world of files built by the code under test; its outcome is
one of: ``one-line error`` (the contract), ``traceback``, ``crash (signal N)``, ``accepted``
(exit 0: the bad input went through), ``multi-line error``, ``inputs changed`` or ``files
written`` (a refusal that still touched the disk), ``timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "badinput"), str(ROOT / "tests")]

FAMILIES = ("layout", "sim", "scan", "dataset", "models", "design")


def _cases() -> list[tuple[str, object]]:
    import importlib

    out = []
    for family in FAMILIES:
        module = importlib.import_module(f"test_{family}_bad_input")
        out += [(family, case) for case in module.CASES]
    return out


def outcome(case: object, code: int, err: str, before: dict[str, str], w: Path) -> str:
    from world import digest_tree

    if code < 0:
        return f"crash (signal {-code})"
    if "Traceback" in err:
        return "traceback"
    if code == 0:
        return "accepted"
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    after = digest_tree(w)
    if any(after.get(k) != v for k, v in before.items()):
        return "inputs changed"
    if set(after) - set(before) - set(getattr(case, "may_write", ())):
        return "files written"
    if len(errors) == 1 and len(lines) == 1:
        return "one-line error"
    return "multi-line error"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="Code to run the cases on.")
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="Also write the outcomes here.")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{args.src.resolve()}{os.pathsep}{ROOT / 'tests'}"}
    env.setdefault("PYLON_CAMEMU", "2")
    sys.path.insert(0, str(args.src.resolve()))  # build the world with the code under test
    from world import build_world, case_world, digest_tree

    rows = []
    with tempfile.TemporaryDirectory(prefix="metascan-sweep-") as tmp:
        (Path(tmp) / "world").mkdir()
        with contextlib.redirect_stdout(sys.stderr):  # the table alone goes to stdout
            world = build_world(Path(tmp) / "world")
        for i, (family, case) in enumerate(_cases()):
            w = case_world(world, Path(tmp) / f"case{i}")
            try:
                if case.prepare is not None:  # type: ignore[attr-defined]
                    case.prepare(w)  # type: ignore[attr-defined]
            except Exception as exc:  # the world of another version may lack what it edits
                rows.append(
                    {
                        "family": family,
                        "case": case.name,
                        "outcome": "not applicable",  # type: ignore[attr-defined]
                        "stderr": f"prepare failed: {exc}",
                    }
                )
                continue
            before = digest_tree(w)
            argv = case.command(w)  # type: ignore[attr-defined]
            command = [sys.executable, "-c", "from metascan.cli import main; main()", *argv]
            try:
                done = subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=args.timeout_s
                )
                result = outcome(case, done.returncode, done.stderr, before, w)
                first = (done.stderr.strip().splitlines() or [""])[-1][:160]
            except subprocess.TimeoutExpired:
                result, first = "timeout", ""
            rows.append(
                {"family": family, "case": case.name, "outcome": result, "stderr": first}  # type: ignore[attr-defined]
            )
            print(f"{i + 1:4d} {family:8s} {result:16s} {case.name}", file=sys.stderr)  # type: ignore[attr-defined]
    print("| family | bad input | outcome | last stderr line |")
    print("|---|---|---|---|")
    for r in rows:
        text = r["stderr"].replace("|", "\\|").replace(tmp, "…")
        print(f"| {r['family']} | {r['case']} | {r['outcome']} | {text} |")
    summary = Counter(r["outcome"] for r in rows)
    print(json.dumps({"src": str(args.src), "cases": len(rows), "outcomes": summary}))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
