"""``voxmetric demo``: the main job, end to end, on the built-in corpus.

1. Generates the synthetic corpus in ``OUT/corpus`` (skipped when present).
2. Measures this machine's training speed on a few batches and picks one batch
   budget per loss so that the whole run takes about ``budget_minutes``.
3. Runs :func:`voxmetric.compare.compare` for the six losses of the paper on a
   scaled-down SincTDNN (``voxmetric/configs/demo.yml`` says how it is scaled
   down; the seed's full configuration is in ``configs/sinctdnn_aam.yml``).
4. Prints the table and where the plots are. Every figure is computed now.
"""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

from .compare import PAPER_LOSSES, compare
from .config import load_config

DEMO_SPEAKERS = 96
DEMO_UTTERANCES = 8
MIN_BATCHES, MAX_BATCHES = 30, 600
PROBE_BATCHES = 8


def _probe_batches_per_s(config, probe_dir: Path) -> float:
    """Training speed of the demo network here: the loop's own time over a few batches."""
    from .compare import run_config
    from .trainer import train

    probe = run_config(config, "aam", budget_batches=PROBE_BATCHES, budget_s=None)
    probe.validation.trials = None
    result = train(probe, probe_dir, progress=False, overwrite=True)
    shutil.rmtree(probe_dir, ignore_errors=True)
    return PROBE_BATCHES / max(result.train_time_s, 1e-3)


def run_demo(out_dir: str = "demo", budget_minutes: float = 10.0, progress: bool = True) -> int:
    from ..data.synth.corpus import synthesize

    out = Path(out_dir)
    started = time.perf_counter()
    print(f"voxmetric demo: the loss comparison of Coria et al. (2020), scaled down to ~{budget_minutes:.0f} "
          f"minutes on this machine.\nScaled-down SincTDNN (1.5 s chunks, 128-channel TDNN, 16x2 chunks per "
          f"batch) on the built-in synthetic corpus; the seed's full configuration is configs/sinctdnn_aam.yml.",
          flush=True)
    summary = synthesize(out / "corpus", speakers=DEMO_SPEAKERS, utterances=DEMO_UTTERANCES, seed=0,
                         progress=progress)
    print(summary, flush=True)
    config_path = out / "demo.yml"
    config_path.write_text(resources.files("voxmetric.configs").joinpath("demo.yml").read_text())
    config = load_config(config_path)

    rate = _probe_batches_per_s(config, out / ".probe")
    elapsed_min = (time.perf_counter() - started) / 60
    # About 90% of what is left trains; embedding and scoring the test trials is quick.
    train_s = max(0.0, budget_minutes - elapsed_min) * 60 * 0.9 / len(PAPER_LOSSES)
    batches = int(min(MAX_BATCHES, max(MIN_BATCHES, rate * train_s)))
    print(f"measured {rate:.2f} batches/s: training budget {batches} batches per loss", flush=True)

    report = compare(config, list(PAPER_LOSSES), str(out / "compare"), budget=str(batches), progress=progress)
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{report.table}\n")
    print(f"Computed now in {minutes:.1f} min. Table: {report.results_md}\nDET curves: {report.det_plot}\n"
          f"Training curves: {report.curves_plot}\nCheckpoints: {report.out_dir}/<loss>/checkpoints/")
    return 0
