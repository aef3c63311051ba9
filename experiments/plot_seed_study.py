"""Loss and keypoint-spread curves of seed studies, each seed coloured by whether it found
every object (`experiments.seed_study` JSON, or several studies merged into one file).

  python -m experiments.plot_seed_study --study=docs/seed_study_h200.json \
      --variants=base,k8_b8_4000 --out=docs/seed_study_curves.png

One column per study: the reconstruction loss (log scale) and the mean spread of the K
keypoints against the step; seeds whose every object reached `--min_recall` in green, the
others in red, so a plateau that some seeds never leave stands out.
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import app
from absl import flags

from experiments import harness
from keypoints import visualize

_STUDY = flags.DEFINE_string("study", None, "A seed_study JSON, or a JSON object mapping "
                             "variant names to such studies.", required=True)
_VARIANTS = flags.DEFINE_list("variants", None, "With a merged file: the variants to plot, in "
                              "order (default: all).")
_OUT = flags.DEFINE_string("out", None, "PNG to write.", required=True)
_MIN_RECALL = flags.DEFINE_float("min_recall", 0.9, "A seed succeeds when every object's "
                                 "held-out recall reaches this.")


def load_studies(path: pathlib.Path, variants: list[str] | None) -> dict[str, dict]:
  try:
    data = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"cannot read {path}: {e}") from None
  studies = {data.get("name", path.stem): data} if "seeds" in data else data
  if variants:
    missing = [v for v in variants if v not in studies]
    if missing:
      raise ValueError(f"{path} has no variant {', '.join(missing)}; it has "
                       f"{', '.join(studies)}")
    studies = {v: studies[v] for v in variants}
  return studies


def plot(studies: dict[str, dict], out: pathlib.Path, min_recall: float) -> None:
  plt = visualize.pyplot()
  fig, axes = plt.subplots(2, len(studies), figsize=(4.2 * len(studies), 6), squeeze=False,
                           sharey="row")
  for col, (name, study) in enumerate(studies.items()):
    seeds = study["seeds"]
    hits = sum(s["min_recall"] >= min_recall for s in seeds)
    for s in seeds:
      ok = s["min_recall"] >= min_recall
      style = dict(color="tab:green" if ok else "tab:red", alpha=0.8, lw=1.2)
      axes[0, col].plot(s["step"], s["loss"], **style)
      axes[1, col].plot(s["step"], s["keypoint_spread"], label=f"seed {s['seed']}: min recall "
                        f"{s['min_recall']:.2f}", **style)
    axes[0, col].set_yscale("log")
    axes[0, col].set_title(f"{name}: {hits} of {len(seeds)} seeds find every object",
                           fontsize=9)
    axes[1, col].set_xlabel("step")
    axes[1, col].legend(fontsize=7)
    for ax in axes[:, col]:
      ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("training loss")
  axes[1, 0].set_ylabel("keypoint spread")
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    studies = load_studies(pathlib.Path(_STUDY.value), _VARIANTS.value)
  except ValueError as e:
    sys.exit(f"error: {e}")
  plot(studies, pathlib.Path(_OUT.value), _MIN_RECALL.value)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  harness.run(main)
