"""Compare loss functions: the experiment of Coria et al. (2020), with seeds and significance.

Every loss is trained ``seeds`` times with everything else identical; seed ``s``
(``config.seed + s``) sets the initialisation and the batch stream, and it is the
same for every loss: loss L with seed s sees exactly the batches loss L' with seed s
sees (the stream is a function of (seed, rank, batch number), see
:mod:`voxmetric.data.sampler`), and the network starts from the same weights. Each
run trains for a fixed number of batches (the config's ``training.epochs`` x
``training.batches_per_epoch``, or ``budget``): time is measured and reported,
never used to decide anything, unless a ``budget`` in minutes is asked for
explicitly (then the amount of training depends on the machine and its load, and
results.md says so). When validation trials are configured, each epoch ends with a
validation EER and the checkpoint with the best one is the one tested (model
selection on validation speakers, never on test trials).

Each model is evaluated on the same test trials with cosine scoring and with
adaptive s-norm. Written into ``out_dir``:

- ``<loss>/seed<s>/``: each run's experiment folder (config, checkpoints, metrics.jsonl);
- ``results.md``: per loss the per-seed EER and minDCF, their means and 95% intervals
  over seeds and trials (two-level bootstrap, :mod:`voxmetric.evaluate.significance`);
  the pairwise paired tests (Holm-corrected) and the ranking as far as they support
  it; each run's validation-EER change over its last third of epochs; then the
  times (reported only). ``results.json`` holds every figure; ``scores.npz`` every
  run's test scores (``<loss>/seed<s>/cosine`` and ``.../snorm``), s-norm cohort
  (``.../cohort``: speaker means) and the labels.
- ``det.png``: DET curves (first seed of each loss); ``training_curves.png``:
  training loss per batch and validation EER per epoch, every run.

``reuse_runs`` (``compare --reuse-runs DIR``) skips training: the runs an earlier
comparison trained in ``DIR`` are checked against this config (same training config,
every run and checkpoint present: :mod:`voxmetric.training.compare_runs`) and tested on
this config's evaluation trials, e.g. a degraded copy of the test set. The report is
the same as after training (the figures are computed from the scores the same way;
the s-norm cohort, embeddings of training speech, is taken from the earlier
``scores.npz`` when it was drawn the same way);
``<loss>/seed<s>/`` is not copied: results.json names each run's folder (``run_dir``),
whose ``metrics.jsonl`` gives the training curves.

:func:`compare_scale` repeats the comparison at growing numbers of training speakers
(nested subsets, :func:`voxmetric.data.corpus.nested_speakers`) and plots EER against
training speakers (``scale.png``).

Fairness: pair and triplet losses need K >= 2 chunks per speaker, so every loss
gets the same P x K batches (K from the config, raised to 2 if it is 1).

``jobs`` > 1 trains and tests that many runs at once, each in its own process
(``spawn``) with ``threads`` intra-op threads. A run's figures depend only on its config,
seed and thread count, never on which process ran it or what ran beside it, so
``jobs`` changes the wall time and nothing else (tested). Small networks use two cores
better as two one-thread runs than as one two-thread run (the demo's SincTDNN: about
1.4x the batches per second). The workers are spawned, so they import the main module:
from a script, call :func:`compare` with ``jobs`` > 1 under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any


from .config import Config
from ..errors import ConfigError, Interrupted, TrainingError
from ..fileio import atomic_open, check_writable_folder, write_json
from .compare_runs import (SourceRuns, last_third_change, read_source, reused_run, run_summary,  # noqa: F401
                           tested_checkpoint)
from .compare_report import (TIME_SECTION, CompareReport, _budget_text, _interval, _pct, _write_report,  # noqa: F401
                             results_table)

PAPER_LOSSES = ("ce", "center", "coco", "aam", "contrastive", "triplet")

def parse_budget(budget: str | int | None) -> tuple[int | None, float | None]:
    """``"300"`` -> (300 batches, None); ``"2min"`` / ``"2.5 min"`` -> (None, 150 s)."""
    if budget is None:
        return None, None
    text = str(budget).strip().lower()
    minutes = text.endswith("min")
    try:
        value = float(text[:-3].strip()) if minutes else int(text)
    except ValueError:
        raise ConfigError(f"--budget '{budget}' is neither a number of batches (e.g. 300) nor minutes "
                          f"(e.g. 2min)") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--budget '{budget}' must be positive: a number of batches (e.g. 300) or of minutes "
                          f"(e.g. 2min)")
    return (None, value * 60) if minutes else (value, None)


def parse_train_speakers(text: str | None) -> list[int] | None:
    """``"25,50,100"`` -> [25, 50, 100] (ascending, positive, distinct)."""
    if text is None:
        return None
    try:
        counts = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts) or len(set(counts)) != len(counts):
        raise ConfigError(f"--train-speakers '{text}': give distinct positive numbers, e.g. 25,50,100,200")
    return sorted(counts)


def run_config(config: Config, loss_name: str, budget_batches: int | None, budget_s: float | None,
               seed_offset: int = 0) -> Config:
    """The config of one run: the loss swapped, batches fit for pairs, budget and seed applied.

    The loss's hyper-parameters are written out in full (its defaults, then what the config
    sets for it): a run's config.yml says what it was trained with even if a default changes
    later, and ``--reuse-runs`` refuses runs trained under other values."""
    from ..losses import loss_params

    run = copy.deepcopy(config)
    if run.loss.name != loss_name:
        run.loss.name, run.loss.params = loss_name, {}
    run.loss.params = {**loss_params(loss_name), **run.loss.params}
    run.data.chunks_per_speaker = max(2, run.data.chunks_per_speaker)
    run.seed = config.seed + seed_offset
    if budget_batches is not None:
        # As many epochs as the config's epoch length needs, then equal epochs that add up
        # to the budget (or overshoot it by less than one batch per epoch).
        epochs = max(1, math.ceil(budget_batches / run.training.batches_per_epoch))
        run.training.epochs = epochs
        run.training.batches_per_epoch = math.ceil(budget_batches / epochs)
    if budget_s is not None:
        run.training.max_time_s = budget_s
        run.training.epochs = max(run.training.epochs, 10**6)
    return run


def _check(config: Config, losses: list[str], seeds: int) -> None:
    _check_losses(losses)
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be a positive number of training seeds, got {seeds!r}")
    if not config.evaluation.trials:
        raise ConfigError("evaluation.trials is required to compare losses: the test trial list")


@contextmanager
def torch_threads(threads: int | None):
    """Run with exactly ``threads`` intra-op threads (None: leave torch's setting).

    CPU reductions (matrix products, sums) split work by thread, so float results
    can depend on the thread count: a fixed count makes a run reproducible whatever
    the machine's load.
    """
    import torch

    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"--threads must be positive, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _test(run: Config, checkpoint: str | Path, corpus, progress: bool, cohort=None) -> dict[str, Any]:
    """Test one checkpoint on ``run.evaluation``'s trials: cosine and s-norm scores, labels, and
    the s-norm cohort (``cohort``: the one an earlier test of this checkpoint computed)."""
    from ..evaluate.pipeline import cohort_embeddings, evaluate_trials
    from ..inference.frontend import Frontend
    from ..inference.loading import load_network
    from ..inference.prepared_cache import shared_prepared_cache
    from .trainer import resolve_device

    # The checkpoint's network behind the front-end it was validated with: the same
    # path (and so the same scores) as `embed` + `score` + `eval` and `calibrate` of it.
    network, source = load_network(checkpoint)
    # Every run is tested on the same files: read, trimmed and scaled once per process.
    frontend = Frontend(network, source.frontend, resolve_device(run.training.device), cache=shared_prepared_cache())
    started = time.perf_counter()
    e = run.evaluation
    if cohort is None:
        cohort = cohort_embeddings(frontend, corpus, e.cohort_utterances_per_speaker, seed=run.seed,
                                   progress=progress)
    metrics = evaluate_trials(frontend, e.trials, e.root, n_bootstrap=0, cohort=cohort, top_n=e.snorm_top_n,
                              progress=progress, seed=run.seed)
    return {"frontend": metrics["frontend"], "cosine_scores": metrics["scores"],
            "snorm_scores": metrics["snorm_scores"], "labels": metrics["labels"], "cohort": cohort,
            "eval_time_s": time.perf_counter() - started}


def _train_and_score(run: Config, run_dir: Path, corpus, progress: bool, resume: bool = False) -> dict[str, Any]:
    """Train one run (``resume``: continue the one in ``run_dir``; a finished run trains
    nothing), test its best (else last) checkpoint; scores and timings."""
    from .trainer import train

    try:
        result = train(run, run_dir, progress=progress, resume=resume, overwrite=not resume)
    except ConfigError as error:
        if not resume:
            raise
        raise ConfigError(f"{run_dir}: {error}; or replace the comparison with --overwrite") from None
    if result.interrupted:  # Ctrl-C / SIGTERM: the run saved its checkpoint; stop the comparison too
        raise Interrupted(f"{run_dir}: training interrupted (checkpoint saved; the same command with --resume "
                          f"continues the comparison)", result.stop_signal or 15)
    record = result.__dict__
    return {"seed": run.seed, **run_summary(record, run_dir),
            **_test(run, tested_checkpoint(run_dir, record), corpus, progress)}


_worker_corpus: tuple[str, Any] | None = None
"""``(repr(config.data), corpus)``: a ``jobs`` worker's training corpus (the s-norm cohort's source), built once."""


class LinePrefixer:
    """A text stream that writes whole lines to ``stream``, each starting with ``prefix``
    (a ``jobs`` worker's stderr: lines of several runs may interleave, never mix, and each
    says which run it comes from). A partial line waits for its end, or for :meth:`flush`."""

    def __init__(self, stream, prefix: str):
        self.stream, self.prefix, self._pending = stream, prefix, ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.stream.write(f"{self.prefix}{self._pending}\n")
            self._pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def _job(run: Config, run_dir: Path, threads: int, resume: bool = False) -> dict[str, Any]:
    """One run of a ``jobs`` > 1 comparison, in a worker process: train, then test (quietly:
    the parent prints one line per finished run; warnings go to stderr, each line prefixed
    with the run's loss and seed)."""
    import contextlib
    import os
    import sys

    import torch

    from .trainer import build_corpus

    global _worker_corpus
    torch.set_num_threads(threads)
    key = repr(run.data)
    errors = LinePrefixer(sys.stderr, f"[{run_dir.parent.name}, seed {run.seed}] ")
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(errors):
        try:
            if _worker_corpus is None or _worker_corpus[0] != key:
                _worker_corpus = (key, build_corpus(run))
            return _train_and_score(run, run_dir, _worker_corpus[1], progress=False, resume=resume)
        finally:
            errors.flush()


def _run_parallel(plan: list, out: Path, jobs: int, threads: int, progress: bool,
                  resumed: frozenset = frozenset()) -> dict[str, list[dict[str, Any]]]:
    """Every run of ``plan`` in ``jobs`` worker processes; the results in plan order.

    At most ``jobs`` runs are handed out at a time (none waits in a queue), one line per
    finished run when ``progress``. The workers have their own process group, so a
    terminal's Ctrl-C reaches this process only: on SIGINT or SIGTERM it sends SIGTERM to
    the workers, whose runs save a checkpoint and stop (:mod:`voxmetric.training.run_state`),
    starts nothing new and raises :class:`voxmetric.errors.Interrupted`. A failing run stops the others the same
    way, then its error is raised.
    """
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    started = time.perf_counter()
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=os.setpgrp)
    stopping: list[int] = []

    def stop_workers() -> None:
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            if process.is_alive():
                process.terminate()  # SIGTERM: the run saves its checkpoint at the end of its batch

    def on_signal(signum, frame) -> None:
        stopping.append(signum)
        stop_workers()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    todo = list(plan)
    in_flight: dict = {}
    by_run: dict[tuple[str, int], dict[str, Any]] = {}
    error: BaseException | None = None
    try:
        while todo or in_flight:
            while todo and len(in_flight) < jobs and not stopping and error is None:
                name, _, run = todo.pop(0)
                in_flight[executor.submit(_job, run, out / name / f"seed{run.seed}", threads,
                                          (name, run.seed) in resumed)] = (name, run.seed)
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                name, seed = in_flight.pop(future)
                try:
                    result = future.result()
                except BaseException as failure:  # noqa: BLE001 - re-raised below, after the others stopped
                    if error is None and not stopping:
                        error = failure
                        if isinstance(failure, BrokenProcessPool):
                            error = TrainingError(f"{out / name / f'seed{seed}'}: the worker process training "
                                                  f"{name}, seed {seed} died (killed, or out of memory?)")
                        stop_workers()
                    continue
                by_run[name, seed] = result
                if progress:
                    best = result.get("best_val_eer")
                    validation = "" if best is None else f", best validation EER {best:.2f}%"
                    print(f"[{len(by_run)}/{len(plan)}] {name}, seed {seed}: {result['batches']} batches in "
                          f"{result['train_time_s']:.0f} s{validation} ({(time.perf_counter() - started) / 60:.1f} "
                          f"min)", flush=True)
            if stopping or error is not None:
                todo.clear()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        executor.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error
    if stopping:
        raise Interrupted(f"{out}: comparison interrupted (each running run saved its checkpoint; the same command "
                          f"with --resume continues it)", stopping[0])
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, _, run in plan:
        runs.setdefault(name, []).append(by_run[name, run.seed])
    return runs


def parse_losses(text: str) -> list[str]:
    """``"ce, aam,triplet"`` -> ``["ce", "aam", "triplet"]`` (the ``--losses`` option).

    Raises:
        ConfigError: no name at all (``""``, ``","``: an empty shell variable must not mean
            every loss), an unknown name, or a name given twice.
    """
    losses = [name.strip() for name in text.split(",") if name.strip()]
    if not losses:
        raise ConfigError(f"--losses: no loss named in '{text}'; give names separated by commas, e.g. aam,triplet "
                          f"(leave --losses out for the paper's six)")
    _check_losses(losses)
    return losses


def _check_losses(losses: list[str]) -> None:
    from ..losses import LOSSES

    if not losses:
        raise ConfigError("--losses: give at least one loss name")
    unknown = [name for name in losses if name not in LOSSES]
    if unknown:
        raise ConfigError(f"--losses: unknown loss '{unknown[0]}'; allowed: {', '.join(sorted(LOSSES))}")
    if len(set(losses)) != len(losses):
        raise ConfigError(f"--losses: a loss is named twice in {', '.join(losses)}")


REPORT_FILES = ("results.md", "results.json", "scores.npz", "det.png", "training_curves.png")
"""What :func:`compare` writes at the end, beside the run folders."""


def _holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in ("config.yml", "metrics.jsonl", "checkpoints"))


def _check_earlier(out: Path, earlier: list[str], resume: bool, overwrite: bool, trains: bool) -> None:
    """Refuse ``--resume`` with ``--overwrite``, and what an earlier comparison left in ``out``
    (``earlier``: its run folders, sizes or reports) without one of them."""
    if resume and overwrite:
        raise ConfigError("--resume continues the comparison in the output folder, --overwrite replaces it: give one")
    if earlier and not (resume or overwrite):
        how = "continue it with --resume, replace it" if trains else "replace it"
        raise ConfigError(f"{out} already holds a comparison ({earlier[0]}): {how} with --overwrite, "
                          f"or choose another --out")


def claim_output(out: Path, planned: list[str], resume: bool, overwrite: bool, trains: bool = True) -> set[str]:
    """Make ``out`` ready for a comparison whose runs are ``planned`` (``"loss/seed<s>"``).

    An earlier comparison there (run folders ``*/seed*``, or its report) is an error unless
    ``resume`` (continue it: its planned runs go on from their checkpoints, finished ones
    train nothing; a run folder outside the plan is an error) or ``overwrite`` (its run
    folders outside the plan are removed, the planned ones start again). Either way the
    earlier report is removed: it is written again at the end. Returns the planned runs that
    resume from a checkpoint.
    """
    runs = sorted(f"{d.parent.name}/{d.name}" for d in out.glob("*/seed*") if _holds_run(d)) if out.is_dir() else []
    reports = [name for name in REPORT_FILES if (out / name).exists()]
    _check_earlier(out, runs + reports, resume, overwrite, trains)
    if not runs and not reports:
        return set()
    stale = [run for run in runs if run not in planned]
    if resume and stale:
        raise ConfigError(f"--resume: {out} holds runs this comparison does not plan ({', '.join(stale)}): give the "
                          f"earlier comparison's --losses and --seeds, or replace it with --overwrite")
    import shutil

    for run in stale:
        shutil.rmtree(out / run)
        if not any((out / run).parent.iterdir()):
            (out / run).parent.rmdir()
    for name in reports:
        (out / name).unlink()
    return {run for run in planned if resume and (out / run / "checkpoints" / "last.pt").exists()}


def compare(config: Config, losses: list[str] | None, out_dir: str, budget: str | None = None,
            seeds: int | None = None, threads: int | None = None, progress: bool = True,
            reuse_runs: str | Path | None = None, jobs: int = 1, resume: bool = False,
            overwrite: bool = False) -> CompareReport:
    """Train and evaluate every loss ``seeds`` times; write the tables and plots (module docstring).

    ``losses`` None: the paper's six; ``seeds`` None: 1. With ``reuse_runs`` (an earlier
    comparison's output folder) nothing is trained: its runs are checked against this
    config (:mod:`voxmetric.training.compare_runs`; all of them, before any testing) and
    tested on this config's evaluation trials; losses, seeds, budget and threads default
    to the earlier comparison's, and the report is the one training would have written.
    ``jobs`` > 1: that many runs at once, in worker processes (module docstring); it needs
    ``threads`` (a fixed count per run) and applies to training only. An earlier comparison
    in ``out_dir`` is refused unless ``resume`` or ``overwrite`` (:func:`claim_output`).
    """
    from .trainer import build_corpus

    source = None
    if reuse_runs is not None:
        if budget is not None:
            raise ConfigError("--budget with --reuse-runs: the reused runs were trained already, with the budget of "
                              "the comparison that trained them")
        source = read_source(reuse_runs)
        if Path(out_dir).resolve() == source.dir.resolve():
            raise ConfigError(f"--out {out_dir} is the --reuse-runs folder: write the new results elsewhere")
        losses = losses if losses is not None else source.losses
        seeds, budget = seeds if seeds is not None else source.seeds, source.budget
        threads = threads if threads is not None else source.threads
    losses, seeds = list(PAPER_LOSSES if losses is None else losses), seeds if seeds is not None else 1
    _check(config, losses, seeds)
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be a positive number of processes, got {jobs!r}")
    if jobs > 1 and threads is None:
        raise ConfigError("--jobs N needs --threads T (threads per run): without a fixed count the figures would "
                          "depend on how many threads each process happened to get")
    budget_batches, budget_s = parse_budget(budget)
    if jobs > 1 and budget_s is not None:
        raise ConfigError("--jobs N with a budget in minutes: runs sharing the machine would each get less training "
                          "in that time; give the budget in batches")
    out = Path(out_dir)
    check_writable_folder(out)  # a file in the way or no permission: said before any training
    plan = [(name, s, run_config(config, name, budget_batches, budget_s, seed_offset=s))
            for name in losses for s in range(seeds)]
    if resume and source is not None:
        raise ConfigError("--resume with --reuse-runs: nothing is trained when runs are reused")
    reused = {(name, run.seed): reused_run(source, name, run) for name, _, run in plan} if source else {}
    resumed = claim_output(out, [f"{name}/seed{run.seed}" for name, _, run in plan], resume, overwrite,
                           trains=source is None)
    resumed = frozenset((name, run.seed) for name, _, run in plan if f"{name}/seed{run.seed}" in resumed)
    if progress and resumed:
        print(f"== resuming {out}: {len(resumed)} of {len(plan)} runs have a checkpoint (a finished one trains "
              f"nothing and is tested again)", flush=True)
    if jobs > 1 and source is None:
        if progress:
            print(f"== {len(plan)} runs ({', '.join(losses)} x {seeds} seeds), {jobs} at a time with {threads} "
                  f"thread(s) each: training ({_budget_text(plan[0][2])}), then testing on "
                  f"{config.evaluation.trials}", flush=True)
        runs = _run_parallel(plan, out, jobs, threads, progress, resumed)
        return _write_report(out, runs, config, seeds, budget_s is not None, threads, budget=budget)
    with torch_threads(threads):
        corpus = build_corpus(config)
        runs: dict[str, list[dict[str, Any]]] = {}
        for name, s, run in plan:
            if source is None:
                again = (name, run.seed) in resumed
                if progress:
                    print(f"== {name}, seed {run.seed} ({s + 1}/{seeds}): {'resuming' if again else 'training'} "
                          f"({_budget_text(run)}), then testing on {config.evaluation.trials}", flush=True)
                result = _train_and_score(run, out / name / f"seed{run.seed}", corpus, progress, resume=again)
            else:
                summary, checkpoint = reused[name, run.seed]
                if progress:
                    print(f"== {name}, seed {run.seed} ({s + 1}/{seeds}): testing {checkpoint} on "
                          f"{config.evaluation.trials}", flush=True)
                cohort = source.cohort(name, run.seed, config.evaluation.cohort_utterances_per_speaker)
                result = {"seed": run.seed, **summary, **_test(run, checkpoint, corpus, progress, cohort)}
            runs.setdefault(name, []).append(result)
        return _write_report(out, runs, config, seeds, budget_s is not None, threads, budget=budget,
                             reused_from=source.dir if source else None)


def compare_scale(config: Config, losses: list[str] | None, out_dir: str, train_speakers: list[int],
                  budget: str | None = None, seeds: int | None = None, threads: int | None = None,
                  progress: bool = True, reuse_runs: str | Path | None = None,
                  jobs: int = 1, resume: bool = False, overwrite: bool = False) -> tuple[list[CompareReport], str]:
    """:func:`compare` at each number of training speakers (nested subsets), then ``scale.png``
    (mean EER with its 95% interval against training speakers, one line per loss),
    ``scale.md`` and ``scale.json`` in ``out_dir``. Returns the reports and the plot's path.
    With ``reuse_runs`` (an earlier ``compare_scale`` output), each size reuses its
    ``speakers-N`` folder. ``resume`` / ``overwrite`` apply to each size's comparison; an
    earlier ``speakers-N`` folder outside ``train_speakers`` is an error with ``resume``,
    removed with ``overwrite``; without either an earlier output is refused before any work."""
    import shutil

    from ..evaluate.plots import plot_scale

    out = Path(out_dir)
    check_writable_folder(out)
    earlier = sorted(p.name for p in out.glob("speakers-*") if p.is_dir()) if out.is_dir() else []
    earlier += [name for name in ("scale.md", "scale.json", "scale.png") if (out / name).exists()]
    _check_earlier(out, earlier, resume, overwrite, trains=reuse_runs is None)
    stale = [name for name in earlier if name.startswith("speakers-") and
             name not in {f"speakers-{count}" for count in train_speakers}]
    if stale and resume:
        raise ConfigError(f"--resume: {out} holds sizes this comparison does not plan ({', '.join(stale)}): give "
                          f"the earlier --train-speakers, or replace it with --overwrite")
    for name in stale:
        shutil.rmtree(out / name)
    reports = []
    for count in train_speakers:
        scaled = copy.deepcopy(config)
        scaled.data.num_speakers = count
        if progress:
            print(f"=== {count} training speakers", flush=True)
        source = None if reuse_runs is None else Path(reuse_runs) / f"speakers-{count}"
        reports.append(compare(scaled, losses, str(out / f"speakers-{count}"), budget, seeds, threads, progress,
                               reuse_runs=source, jobs=jobs, resume=resume, overwrite=overwrite))
    losses = [row["loss"] for row in reports[0].rows]
    seeds = len(reports[0].rows[0]["runs"])
    points = {name: [] for name in losses}
    for count, report in zip(train_speakers, reports):
        for row in report.rows:
            summary = row["cosine"]
            points[row["loss"]].append((count, summary["mean_eer"], *(summary["eer_ci"] or [None, None])))
    plot = out / "scale.png"
    plot_scale(points, plot)
    lines = ["# Loss comparison against training speakers", "",
             f"Mean test EER % over {seeds} seed(s), 95% interval over seeds and trials (two-level bootstrap). "
             "Speaker subsets are nested (voxmetric.data.corpus.nested_speakers).", "",
             "| loss | " + " | ".join(f"{c} speakers" for c in train_speakers) + " |",
             "|---|" + "---|" * len(train_speakers)]
    for name in losses:
        cells = [f"{_pct(m)} ({_interval(lo, hi)})" for _, m, lo, hi in points[name]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    with atomic_open(out / "scale.md") as f:
        f.write("\n".join(lines) + "\n")
    write_json(out / "scale.json", {"train_speakers": train_speakers, "points": points})
    return reports, str(plot)
