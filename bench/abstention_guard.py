"""Calibrate the guard for unverified answers (`CitationSettings.unsupported_min_scores`,
`unsupported_min_fused_scores`).

An answer none of whose citations verifies is "not in the sources" when no source is close to
the question by one signal: its dense cosine (`top_dense` in the rows) or its fused DBSF score
(`top_score`, a hybrid search without rerank). This sweeps a threshold on each signal over the
rows of one `ragkb eval answers --no-refuse-unsupported` run (every unverified answer kept),
picks the signal and threshold on a calibration half of the questions (by a hash of the
question id) and reports the other half: in-corpus questions still answered, and out-of-corpus
ones (left-out evidence, general knowledge) answered "not in the sources".

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


# The rows' field for each signal, by the setting that uses it.
SIGNALS = {"dense": "top_dense", "fused": "top_score"}


def refuses_below(threshold: float, signal: str = "dense") -> Callable[[Row], bool]:
    """The guard at `threshold`: an answered row with no verified citation whose best source's
    `signal` (dense cosine, or fused score) is below it."""
    field = SIGNALS[signal]

    def refuses(row: Row) -> bool:
        value = row.get(field)
        return row["verified_citations"] == 0 and value is not None and value < threshold

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
    """Each signal's threshold picked on the calibration half, the signal picked there, and
    every guard on each half."""
    ok = [r for r in rows if "error" not in r]
    halves = {name: [r for r in ok if half(r["query_id"]) == name] for name in HALVES}
    parts = {**halves, "all": ok}
    picks: dict[str, dict[str, Any]] = {}
    for signal, field in SIGNALS.items():
        values = {round(r[field], 3) for r in ok if r.get(field) is not None}
        candidates = sorted(values | {round(v + 0.001, 3) for v in values})
        sweeps = {
            part: [
                {"threshold": t, **outcome(halves[part], refuses_below(t, signal))}
                for t in candidates
            ]
            for part in HALVES
        }
        best = max(
            sweeps["calibration"], key=lambda s: (_balanced(s), -s["threshold"]), default=None
        )
        if best is not None:
            picks[signal] = {"threshold": best["threshold"], "calibration_score": _balanced(best),
                             "sweeps": sweeps}  # fmt: skip
    chosen = max(picks, key=lambda name: picks[name]["calibration_score"], default=None)
    guards: dict[str, Callable[[Row], bool]] = {
        "none": lambda r: False,
        "refuse_unsupported": lambda r: r["verified_citations"] == 0,
    }
    for name, pick in picks.items():
        guards[f"{name} < {pick['threshold']}"] = refuses_below(pick["threshold"], name)
    return {
        "signal": chosen,
        "threshold": picks[chosen]["threshold"] if chosen else None,
        "thresholds": {name: pick["threshold"] for name, pick in picks.items()},
        "guards": {
            name: {part: outcome(part_rows, refuses) for part, part_rows in parts.items()}
            for name, refuses in guards.items()
        },
        "sweeps": {name: pick["sweeps"] for name, pick in picks.items()},
    }


def _plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    signals = list(result["sweeps"])
    fig, axes = plt.subplots(1, len(signals), figsize=(6 * len(signals), 4), squeeze=False)
    for ax, signal in zip(axes[0], signals, strict=True):
        for (part, sweep), style in zip(result["sweeps"][signal].items(), ["-", ":"], strict=False):
            xs = [s["threshold"] for s in sweep]
            ax.plot(xs, [s["answered_when_present"] for s in sweep], style, color="tab:blue",
                    label=f"in-corpus answered ({part})")  # fmt: skip
            ax.plot(xs, [s["refused_when_absent"] for s in sweep], style, color="tab:orange",
                    label=f"out-of-corpus refused ({part})")  # fmt: skip
        picked = result["thresholds"][signal]
        ax.axvline(picked, color="grey", linestyle="--", label=f"picked {picked}")
        ax.set_xlabel(f"best source's {signal} score below which an unverified answer is refused")
        ax.set_ylabel("share")
        ax.set_title(f"{title}: {signal}" + (" (picked)" if signal == result["signal"] else ""))
        ax.legend(loc="lower left", fontsize=7)
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
    _plot(result, args.out.with_suffix(".png"), str(result["embedding_model"]))
    print(f"picked on the calibration half: {result['signal']} < {result['threshold']} "
          f"(each signal's pick: {result['thresholds']})")  # fmt: skip
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
