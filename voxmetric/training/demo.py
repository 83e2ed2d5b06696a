"""``voxmetric demo``: the paper's experiment, end to end, on the built-in corpus; deterministic.

1. Generates the synthetic corpus in ``OUT/corpus`` (skipped when present):
   ``DEMO_SPEAKERS`` speakers x ``DEMO_UTTERANCES`` utterances, split into disjoint
   train / validation / test speakers.
2. Runs :func:`voxmetric.training.compare.compare` for the six losses of the paper,
   ``seeds`` times each (default 3), on a scaled-down SincTDNN
   (``voxmetric/configs/demo.yml`` says how it is scaled down; the seed's full
   configuration is in ``configs/sinctdnn_aam.yml``). Every run trains for the same
   fixed number of batches, validates on the corpus' validation trials after every
   epoch, and its best-validation checkpoint is tested on the test trials. A demo already
   in ``OUT`` is continued (``compare`` ``resume``): an interrupted demo, run again,
   prints the tables an uninterrupted one would.
3. Prints the tables (per-seed EER and minDCF, means, intervals over seeds and trials,
   pairwise tests, the ranking as far as the tests support it) and where the plots are.

Nothing depends on this machine's speed or load: budgets are batches, not time;
every run uses ``DEMO_THREADS`` intra-op threads (float reductions depend on the thread
count); the batch stream is a function of (seed, rank, batch number) and the config
loads data in the main process (``num_workers: 0``). ``DEMO_JOBS`` runs train at once,
each in its own process (:func:`voxmetric.training.compare.compare` ``jobs``): which
process runs which run changes nothing. Two runs on one machine print identical tables;
only the reported times differ.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from ..errors import Interrupted
from .compare import PAPER_LOSSES, compare
from .config import Config, load_config

DEMO_SPEAKERS = 96
DEMO_UTTERANCES = 8
DEMO_SEEDS = 3
DEMO_THREADS = 1
"""Intra-op threads of every demo run: fixed, so that results do not depend on the machine."""
DEMO_JOBS = 2
"""Runs trained at once (processes): two one-thread runs use 2 cores ~1.4x better than one two-thread run."""


def demo_config(out: Path, config_text: str | None = None) -> Config:
    """The demo's config, written to ``OUT/demo.yml`` (paths relative to ``OUT``)."""
    config_path = out / "demo.yml"
    text = config_text if config_text is not None else \
        resources.files("voxmetric.configs").joinpath("demo.yml").read_text()
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(text)
    return load_config(config_path)


def run_demo(out_dir: str = "demo", seeds: int = DEMO_SEEDS, progress: bool = True, *,
             losses: tuple[str, ...] = PAPER_LOSSES, speakers: int = DEMO_SPEAKERS,
             utterances: int = DEMO_UTTERANCES, config_text: str | None = None,
             threads: int = DEMO_THREADS, jobs: int = DEMO_JOBS, overwrite: bool = False) -> int:
    """Run the demo into ``out_dir``. The keyword-only arguments exist for tests (a tiny
    corpus and config through the same code path); ``voxmetric demo`` uses the defaults.

    A demo already in ``out_dir`` is continued: finished runs train nothing, an interrupted
    one resumes from its checkpoint (exactly: the tables are the ones an uninterrupted demo
    prints); ``overwrite`` starts every run again."""
    from ..data.synth.corpus import synthesize

    out = Path(out_dir)
    started = time.perf_counter()
    print(f"voxmetric demo: the loss comparison of Coria et al. (2020), {len(losses)} losses x {seeds} seeds, "
          f"scaled down to CPU.\nScaled-down SincTDNN on the built-in synthetic corpus (voxmetric/configs/demo.yml); "
          f"the seed's full configuration is configs/sinctdnn_aam.yml. Fixed budgets in batches, {threads} torch "
          f"thread(s) per run, {jobs} run(s) at a time: the tables do not depend on this machine's speed or load.",
          flush=True)
    summary = synthesize(out / "corpus", speakers=speakers, utterances=utterances, seed=0, progress=progress,
                         overwrite=overwrite)
    print(summary, flush=True)
    config = demo_config(out, config_text)
    try:
        report = compare(config, list(losses), str(out / "compare"), seeds=seeds, threads=threads,
                         progress=progress, jobs=jobs, resume=not overwrite, overwrite=overwrite)
    except Interrupted as stopped:
        raise Interrupted(f"{out}: demo interrupted (each running run saved its checkpoint; the same command "
                          f"continues it)", stopped.signal) from None
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{report.table}\n")
    print(f"Computed now in {minutes:.1f} min (time is reported, never used). Tables, pairwise tests and "
          f"convergence: {report.results_md}\nDET curves: {report.det_plot}\nTraining curves: {report.curves_plot}\n"
          f"Checkpoints: {report.out_dir}/<loss>/seed<s>/checkpoints/")
    return 0
