"""Commands that make data and train: synth, train, compare, demo."""

from __future__ import annotations

import os

from ..errors import ConfigError, UsageError
from .common import EXIT_OK, _add_quiet, _command, int_at_least


def add_synth(sub) -> None:
    p = _command(sub, "synth", "generate the built-in synthetic multi-speaker corpus",
                 "Generate the built-in corpus: VoxCeleb layout, train/val/test speakers, trials.",
                 "voxmetric synth data/synth --speakers 40 --utterances 12")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the corpus to")
    p.add_argument("--speakers", type=int, default=40, metavar="N",
                   help="number of speakers, at least 7 (test 4, validation 2, training the rest)")
    p.add_argument("--utterances", type=int_at_least(2), default=12, metavar="K", help="utterances per speaker")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S", help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus made with other settings")
    _add_quiet(p)
    p.set_defaults(func=_run_synth)

def _run_synth(args) -> int:
    from ..data.synth.corpus import MIN_SPEAKERS_TO_TRAIN, split_sizes, synthesize

    if args.speakers < MIN_SPEAKERS_TO_TRAIN:
        sizes = split_sizes(MIN_SPEAKERS_TO_TRAIN)
        raise UsageError(f"--speakers must be at least {MIN_SPEAKERS_TO_TRAIN} (test {sizes['test']}, validation "
                         f"{sizes['val']}, then the training speakers), got {args.speakers}")
    print(synthesize(args.out_dir, speakers=args.speakers, utterances=args.utterances, seed=args.seed,
                     overwrite=args.overwrite, progress=not args.quiet))
    return EXIT_OK

def add_train(sub) -> None:
    p = _command(sub, "train", "train an embedding network from a YAML config",
                 "Train a network; checkpoints every epoch; --resume continues exactly. At the end the "
                 "extraction window (the config's, whole utterance, validation.frontend_candidates) with the "
                 "lowest validation EER is stored in best.pt and last.pt, where embed/verify/calibrate read it. "
                 "Under 'torchrun --nproc_per_node N' it trains with DDP.",
                 "voxmetric train configs/sinctdnn_aam.yml --out exp/aam --set training.epochs=5\n"
                 "  voxmetric train configs/sinctdnn_aam.yml --out exp/aam --select-frontend-only")
    p.add_argument("config", metavar="CONFIG.yml", help="training configuration")
    p.add_argument("-o", "--out", metavar="EXP_DIR", help="experiment folder (default exp/<config name>)")
    _add_resume_or_overwrite(p, "continue from EXP_DIR/checkpoints/last.pt",
                             "replace an earlier run's checkpoints and logs in EXP_DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=5 (repeatable; default: none)")
    p.add_argument("--select-frontend-only", action="store_true",
                   help="train nothing: choose the front-end of the run already in EXP_DIR on the config's "
                        "validation trials and store it in its best.pt and last.pt")
    _add_quiet(p)
    p.set_defaults(func=_run_train)

def _run_train(args) -> int:
    from ..training.config import default_exp_dir, load_config
    from ..training.trainer import train

    config = load_config(args.config, args.set)
    out = args.out or default_exp_dir(args.config)
    if args.select_frontend_only:
        return _select_frontend(args, config, out)
    result = train(config, out, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    if result.already_finished:
        print(f"nothing to train: the run in {out} is finished ({result.already_finished}); "
              f"checkpoints in {out}/checkpoints")
        return EXIT_OK
    status = "interrupted, checkpoint saved" if result.interrupted else "done"
    best = f", best validation EER {result.best_eer:.2f}%" if result.best_eer is not None else ""
    print(f"training {status}: {result.epochs_done} epochs, {result.batches_done} batches{best}; "
          f"checkpoints in {out}/checkpoints")
    if result.interrupted:  # the shell convention for a signal: 130 (SIGINT), 143 (SIGTERM)
        return 128 + (result.stop_signal or 15)
    return EXIT_OK

def _select_frontend(args, config, out: str) -> int:
    from ..training.frontend_select import select_for_run

    if args.resume or args.overwrite:
        raise UsageError("--select-frontend-only trains nothing: drop --resume / --overwrite")
    choice = select_for_run(out, config, progress=not args.quiet)
    print(f"{choice.summary()}; stored in {out}/checkpoints")
    return EXIT_OK

def _add_resume_or_overwrite(p, resume_help: str, overwrite_help: str) -> None:
    """``--resume`` and ``--overwrite``, which exclude each other (giving both is a usage error)."""
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help=resume_help)
    again.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_compare(sub) -> None:
    p = _command(sub, "compare", "train and evaluate one model per loss, write the paper-style table",
                 "Train every loss with the same config, batches and seeds, evaluate each on the test trials "
                 "(cosine and s-norm) and write results.md / results.json (per-seed EER and minDCF, intervals "
                 "over seeds and trials, Holm-corrected pairwise tests, the ranking as far as they support it), "
                 "scores and DET / training-curve plots. --reuse-runs tests the networks of an earlier compare "
                 "on this config's (e.g. overridden) evaluation trials without training again.",
                 "voxmetric compare configs/synth.yml --losses aam,triplet --seeds 3 --out exp/clean\n"
                 "  voxmetric compare configs/synth.yml --seeds 3 --jobs 2 --threads 1 --out exp/paper\n"
                 "  voxmetric compare configs/synth.yml --reuse-runs exp/clean --out exp/noisy "
                 "--set evaluation.trials=noisy/trials.txt --set evaluation.root=noisy")
    p.add_argument("config", metavar="CONFIG.yml", help="training configuration shared by every loss")
    p.add_argument("--losses", help="comma-separated loss names (default: the six of the paper; with "
                                     "--reuse-runs: the earlier compare's)")
    p.add_argument("-o", "--out", metavar="DIR", help="output folder (default exp/<config name>-compare)")
    p.add_argument("--budget", metavar="N|Nmin",
                   help="training budget per run: a number of batches (default: the config's epochs), or minutes "
                        "with 'min' (e.g. 2min; then results depend on the machine's speed and load)")
    p.add_argument("--seeds", type=int_at_least(1), metavar="N",
                   help="train every loss N times (seeds config.seed .. +N-1); intervals and tests cover seeds "
                        "(default 1; with --reuse-runs: the earlier compare's)")
    p.add_argument("--reuse-runs", metavar="SOURCE_DIR",
                   help="do not train: test the trained runs of the earlier compare output SOURCE_DIR (refused "
                        "unless their training config equals this one; only evaluation.* may differ) "
                        "(default: train)")
    p.add_argument("--train-speakers", metavar="N,N,...",
                   help="repeat the comparison with nested subsets of this many training speakers and plot "
                        "scale.png (default: all speakers once)")
    p.add_argument("--threads", type=int_at_least(1), metavar="N",
                   help="torch intra-op threads, fixed so that floats are reproducible (default: torch's; "
                        "with --reuse-runs: the earlier compare's)")
    p.add_argument("--jobs", type=int_at_least(1), default=1, metavar="N",
                   help="train N runs at once, each in its own process with --threads threads (--threads is "
                        "required with N > 1); the figures do not depend on N, only the wall time does (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable; default: none)")
    _add_resume_or_overwrite(
        p, "continue the comparison in DIR: interrupted runs go on from their checkpoints, finished ones train "
           "nothing and are tested again, missing ones are trained (default: an earlier comparison in DIR is refused)",
        "replace the comparison in DIR: every run trains again, run folders of losses or seeds not asked for now "
        "are removed (default: refused)")
    _add_quiet(p)
    p.set_defaults(func=_run_compare)

def _run_compare(args) -> int:
    from ..training.compare import compare, compare_scale, parse_budget, parse_losses, parse_train_speakers
    from ..training.compare_runs import source_train_speakers
    from ..training.config import default_exp_dir, load_config

    if args.resume and args.reuse_runs:
        raise UsageError("--resume with --reuse-runs: nothing is trained when runs are reused (--overwrite replaces "
                         "earlier results)")
    try:  # option values: usage errors, before the config is read
        losses = parse_losses(args.losses) if args.losses is not None else None
        train_speakers = parse_train_speakers(args.train_speakers)
        parse_budget(args.budget)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    config = load_config(args.config, args.set)
    out = args.out or default_exp_dir(args.config) + "-compare"
    if train_speakers is None and args.reuse_runs:
        train_speakers = source_train_speakers(args.reuse_runs)
    if train_speakers:
        _, plot = compare_scale(config, losses, out, train_speakers, budget=args.budget, seeds=args.seeds,
                                threads=args.threads, progress=not args.quiet, reuse_runs=args.reuse_runs,
                                jobs=args.jobs, resume=args.resume, overwrite=args.overwrite)
        print(f"\nresults: {out}/scale.md  plot: {plot}")
        return EXIT_OK
    report = compare(config, losses, out, budget=args.budget, seeds=args.seeds, threads=args.threads,
                     progress=not args.quiet, reuse_runs=args.reuse_runs, jobs=args.jobs, resume=args.resume,
                     overwrite=args.overwrite)
    print(report.table)
    print(f"\nresults: {report.results_md}  plots: {report.det_plot}")
    return EXIT_OK

def add_demo(sub) -> None:
    p = _command(sub, "demo", "the main job end to end on the built-in corpus: 6 losses x 3 seeds, deterministic",
                 "Synthesise the corpus, train the paper's six losses for a fixed number of batches with 3 seeds "
                 "each, test them and print the comparison with intervals and significance tests; the same "
                 "machine prints the same table every time. Run it again after an interruption: it continues "
                 "where it stopped (finished runs train nothing, the interrupted one resumes exactly).",
                 "voxmetric demo --out demo")
    p.add_argument("-o", "--out", default="demo", metavar="DIR", help="output folder (default ./demo)")
    p.add_argument("--overwrite", action="store_true",
                   help="train every run again instead of continuing the demo in DIR (default: continue)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="training seeds per loss, at least 3 (default 3)")
    _add_quiet(p)
    p.set_defaults(func=_run_demo)

def _run_demo(args) -> int:
    from ..fileio import check_writable_folder
    from ..training.demo import run_demo

    if args.seeds < 3:
        raise UsageError(f"demo --seeds must be at least 3 (one seed cannot separate a loss from luck), "
                         f"got {args.seeds}")
    check_writable_folder(args.out)  # before the corpus and the trainings
    return run_demo(args.out, seeds=args.seeds, progress=not args.quiet, overwrite=args.overwrite)
