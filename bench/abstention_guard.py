"""Calibrate the guard for unverified answers (`CitationSettings.unsupported_min_scores`).

An answer none of whose citations verifies is "not in the sources" when no source's dense cosine
with the question reaches a threshold. This sweeps that threshold over the rows of one
`ragkb eval answers --no-refuse-unsupported` run (every unverified answer kept, each row with
its best source's dense cosine), picks it on a calibration half of the questions (by a hash of
the question id) and reports the other half: in-corpus questions still answered, and
out-of-corpus ones (left-out evidence, general knowledge) answered "not in the sources".

The pick maximises answered-in-corpus + refused-out-of-corpus on the calibration half; ties go
to the lower threshold (fewer refusals of in-corpus questions). The two guards it is measured
against: none (every unverified answer kept) and `refuse_unsupported` (every one refused).

    python bench/abstention_guard.py --rows bench/results/answers-scifact-minilm.rows.json \
        --out bench/results/abstention-guard-minilm.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]
HALVES = ("calibration", "held-out")


def half(query_id: str) -> str:
    """`calibration` or `held-out`, fixed per question id (independent of the run's order)."""
    digest = hashlib.sha256(query_id.encode()).digest()
    return "calibration" if digest[0] % 2 == 0 else "held-out"


def refuses_below(threshold: float) -> Callable[[Row], bool]:
    """The guard at `threshold`: an answered row with no verified citation whose best source's
    dense cosine is below it."""

    def refuses(row: Row) -> bool:
        dense = row.get("top_dense")
        return row["verified_citations"] == 0 and dense is not None and dense < threshold

    return refuses


def outcome(rows: Sequence[Row], refuses: Callable[[Row], bool]) -> dict[str, Any]:
    """Shares under a guard: in-corpus answered, out-of-corpus refused (and each kind's)."""

    def answered(row: Row) -> bool:
        return bool(row["answered"]) and not refuses(row)

    present = [r for r in rows if not r["absent"]]
    absent = [r for r in rows if r["absent"]]
    left_out = [r for r in absent if not r["general"]]
    general = [r for r in absent if r["general"]]

    def share(flags: list[bool]) -> float | None:
        return round(sum(flags) / len(flags), 4) if flags else None

    return {
        "present": len(present),
        "absent": len(absent),
        "answered_when_present": share([answered(r) for r in present]),
        "refused_when_absent": share([not answered(r) for r in absent]),
        "refused_left_out": share([not answered(r) for r in left_out]),
        "refused_general": share([not answered(r) for r in general]),
    }


def _balanced(result: dict[str, Any]) -> float:
    return float(result["answered_when_present"] or 0) + float(result["refused_when_absent"] or 0)


def calibrate(rows: Sequence[Row]) -> dict[str, Any]:
    """The threshold picked on the calibration half, and every guard on each half."""
    ok = [r for r in rows if "error" not in r]
    halves = {name: [r for r in ok if half(r["query_id"]) == name] for name in
              ("calibration", "held-out")}  # fmt: skip
    candidates = sorted(
        {round(r["top_dense"], 3) for r in ok if r.get("top_dense") is not None}
        | {round(r["top_dense"], 3) + 0.001 for r in ok if r.get("top_dense") is not None}
    )
    sweep = [
        {"threshold": t, **outcome(halves["calibration"], refuses_below(t))} for t in candidates
    ]
    held_out_sweep = [
        {"threshold": t, **outcome(halves["held-out"], refuses_below(t))} for t in candidates
    ]
    best = max(sweep, key=lambda s: (_balanced(s), -s["threshold"])) if sweep else None
    threshold = best["threshold"] if best else None
    guards: dict[str, Callable[[Row], bool]] = {
        "none": lambda r: False,
        "refuse_unsupported": lambda r: r["verified_citations"] == 0,
    }
    if threshold is not None:
        guards[f"dense < {threshold}"] = refuses_below(threshold)
    parts = {**halves, "all": ok}
    return {
        "threshold": threshold,
        "guards": {
            name: {part: outcome(part_rows, refuses) for part, part_rows in parts.items()}
            for name, refuses in guards.items()
        },
        "sweep_calibration": sweep,
        "sweep_held_out": held_out_sweep,
    }


def _plot(
    sweeps: dict[str, list[dict[str, Any]]], threshold: float | None, path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (part, sweep), style in zip(sweeps.items(), ["-", ":"], strict=False):
        xs = [s["threshold"] for s in sweep]
        ax.plot(xs, [s["answered_when_present"] for s in sweep], style, color="tab:blue",
                label=f"in-corpus answered ({part})")  # fmt: skip
        ax.plot(xs, [s["refused_when_absent"] for s in sweep], style, color="tab:orange",
                label=f"out-of-corpus refused ({part})")  # fmt: skip
    if threshold is not None:
        ax.axvline(threshold, color="grey", linestyle="--", label=f"picked {threshold}")
    ax.set_xlabel("best source's dense cosine below which an unverified answer is refused")
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=Path, required=True, help="an answers *.rows.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = json.loads(args.rows.read_text())
    result = calibrate(rows)
    run = json.loads(args.rows.with_name(args.rows.name.replace(".rows", "")).read_text())
    result = {
        "embedding_model": run.get("embedding_model"),
        "run": run.get("command"),
        **result,
        "command": f"python bench/abstention_guard.py --rows {args.rows} --out {args.out}",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sweeps = {"calibration": result["sweep_calibration"], "held-out": result["sweep_held_out"]}
    _plot(sweeps, result["threshold"], args.out.with_suffix(".png"), str(result["embedding_model"]))
    print(f"threshold picked on the calibration half: {result['threshold']}")
    print("| guard | half | in-corpus answered | out-of-corpus refused | left-out refused | "
          "general refused |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, parts in result["guards"].items():
        for part, o in parts.items():
            print(
                f"| {name} | {part} ({o['present']}+{o['absent']}) | "
                f"{o['answered_when_present']} | {o['refused_when_absent']} | "
                f"{o['refused_left_out']} | {o['refused_general']} |"
            )


if __name__ == "__main__":
    main()
