"""Enhancers on a prepared run's split, in one run: mean SDRi, SI-SDRi and STOI change per model.

Run:
  .venv/bin/python bench/enhancer_valid.py RUN [--split valid] [--names default rnnoise MODEL_URI ...]
                                           [--out OUT]

``RUN`` is a ``batchsep prepare`` run; its ``mixtures/SPLIT/noisy`` files are enhanced by each model
(``batchsep.api.enhance(model=NAME, local=True)``: one process, one worker) and scored against the run's
clean references (``batchsep.api.evaluate(references=RUN, metrics=[sdr, si_sdr, stoi])``). Made for the
default enhancer's recipe (``jobs/train_default_enhancer.yaml``): its valid split holds two speakers and the
noise recordings training never saw, augmented like training (reverberation, telephone band, level, two
noises), which none of ``bench/zoo.py``'s sets has. Prints a Markdown table; writes ``OUT/enhancer_valid.json``.

Before scoring, each model whose ``metrics.json`` records its training data is checked against ``RUN``'s
``SPLIT`` (:func:`batchsep.evaluation.heldout.overlap`): a split sharing a speaker or a noise recording with
the model's *training* data is refused (exit 3; ``--allow-overlap`` scores it anyway). Sharing the model's
validation speakers is expected here (the recipe's own valid split) and only printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--names", nargs="+", default=["default", "rnnoise"])
    parser.add_argument("--out", default="runs/bench-enhancer-valid")
    parser.add_argument("--allow-overlap", action="store_true",
                        help="score a split that shares speakers or noises with a model's training data")  # fmt: skip
    args = parser.parse_args()

    from batchsep import api
    from batchsep.evaluation import heldout

    trained_on = []
    for name in args.names:
        r = heldout.overlap(name, f"{args.run}/mixtures.parquet", split=args.split)
        if r["recorded"]:
            print(heldout.describe(r, f"{args.run} {args.split}"), flush=True)
        if r["speakers"] or r["noise_recordings"]:
            trained_on.append(name)
    if trained_on and not args.allow_overlap:
        print(f"refusing to score: {', '.join(trained_on)} trained on this split's speakers or noise "
              "recordings (--allow-overlap to score anyway)", file=sys.stderr)  # fmt: skip
        sys.exit(3)

    rows = {}
    for name in args.names:
        out = str(Path(args.out) / name.strip("/").replace("/", "_"))
        api.enhance(
            f"{args.run}/mixtures/{args.split}/noisy", out, model=name, emotion=False, local=True
        )
        summary = api.evaluate(
            out, references=args.run, metrics=["sdr", "si_sdr", "stoi"], local=True
        )
        rows[name] = {"files": summary.scored, **summary.means}
    overlap_note = (
        f" (--allow-overlap: NOT held out for {', '.join(trained_on)})" if trained_on else ""
    )
    print(f"\n{args.run}, split {args.split}{overlap_note}\n")
    print("| model | files | SDRi | SI-SDRi | STOI change |\n|---|---|---|---|---|")
    for name, m in rows.items():
        print(
            f"| {name} | {m['files']} | {m['sdr_i']:+.2f} | {m['si_sdr_i']:+.2f} | {m['stoi_i']:+.3f} |"
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "enhancer_valid.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
