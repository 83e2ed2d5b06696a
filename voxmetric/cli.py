"""Command line (SPEC section 4): parsing only; every command calls a library function.

Errors caused by input (a file, a config field, an argument) are printed on one
line as ``voxmetric: error: ...`` with exit status 1; usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import VoxmetricError


def _cmd_synth(args) -> int:
    from .data.synth.corpus import synthesize

    summary = synthesize(args.out_dir, speakers=args.speakers, utterances=args.utterances, seed=args.seed,
                         overwrite=args.overwrite, progress=not args.quiet)
    print(summary)
    return 0


def _cmd_train(args) -> int:
    from .training.config import load_config
    from .training.trainer import train

    config = load_config(args.config, args.set)
    out = args.out or _default_exp_dir(args.config)
    result = train(config, out, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    status = "interrupted, checkpoint saved" if result.interrupted else "done"
    best = f", best validation EER {result.best_eer:.2f}%" if result.best_eer is not None else ""
    print(f"training {status}: {result.epochs_done} epochs, {result.batches_done} batches{best}; "
          f"checkpoints in {out}/checkpoints")
    return 0


def _default_exp_dir(config_path: str) -> str:
    from pathlib import Path

    return str(Path("exp") / Path(config_path).stem)


def _cmd_embed(args) -> int:
    from .inference.speaker_model import MODEL_SETTING, embed_to_file

    import os

    paths = list(args.audio)
    if args.list:
        paths += _read_list(args.list)
    if not paths:
        raise VoxmetricError("embed: give audio files or --list FILE")
    if args.root:  # paths relative to ROOT, stored as given: the keys of a trial list
        ids, paths = paths, [os.path.join(args.root, p) for p in paths]
    else:
        ids = None

    if args.step is not None and not args.step > 0:
        raise VoxmetricError(f"embed --step must be positive, got {args.step}")
    if args.window is not None and args.window < 0:
        raise VoxmetricError(f"embed --window must be positive (or 0 for whole files), got {args.window}")
    window_s = MODEL_SETTING if args.window is None else _window(args.window)
    step_s = MODEL_SETTING if args.step is None else args.step
    count, dim = embed_to_file(args.model, paths, args.out, window_s=window_s, step_s=step_s,
                             device=args.device, progress=not args.quiet, vad=not args.no_vad, ids=ids)
    print(f"wrote {count} embeddings of dimension {dim} to {args.out}")
    return 0


def _window(value: float) -> float | None:
    return None if value is not None and value <= 0 else value


def _read_list(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip() and not line.startswith("#")]
    except OSError as error:
        raise VoxmetricError(f"{path}: cannot read file list ({error.strerror})") from None


def _load(args):
    from .inference.speaker_model import load_model

    return load_model(args.model, device=args.device, calibration=getattr(args, "calibration", None),
                      vad=not args.no_vad)


def _warn(warnings) -> None:
    for warning in warnings:
        print(f"voxmetric: warning: {warning}", file=sys.stderr)


def _cmd_verify(args) -> int:
    from .deploy.enroll import verify_enrolled

    model = _load(args)
    if args.db:
        if not args.name or len(args.audio) != 1:
            raise VoxmetricError("verify --db: give --name NAME and exactly one recording")
        result = verify_enrolled(model, args.db, args.name, args.audio[0])
        enrol, test = f"{args.name} ({args.db})", args.audio[0]
    else:
        if len(args.audio) != 2:
            raise VoxmetricError(f"verify: give two recordings (got {len(args.audio)}), or --db DB --name NAME "
                                 f"and one recording")
        result = model.verify(*args.audio)
        enrol, test = args.audio
    if args.json:
        print(json.dumps({"enrol": enrol, "test": test, "model": args.model, **result.to_dict()}))
        return 0
    _warn(result.warnings)
    llr = "n/a (uncalibrated)" if result.llr is None else f"{result.llr:+.3f}"
    decision = "same speaker" if result.accepted else "different speakers"
    print(f"score {result.score:.4f}  LLR {llr}  threshold {result.threshold:.4f}  decision: {decision}")
    return 0


def _cmd_calibrate(args) -> int:
    from .deploy.calibrate import calibrate_trials

    result = calibrate_trials(_load(args), args.trials, audio_root=args.root, target_far=args.target_far,
                              n_bootstrap=args.bootstrap, progress=not args.quiet)
    _warn(result.warnings)
    result.save(args.out)
    (elow, ehigh), (tlow, thigh) = result.eer_ci, result.threshold_ci
    point = f"FAR {args.target_far:g}" if args.target_far else "the EER point"
    print(f"EER {result.eer * 100:.2f}% (95% CI {elow * 100:.2f}-{ehigh * 100:.2f}) on {result.n_target} target / "
          f"{result.n_nontarget} non-target pairs\nthreshold {result.threshold:.4f} at {point} "
          f"(95% CI {tlow:.4f}-{thigh:.4f}); LLR = {result.scale:.3f} * score {result.offset:+.3f}\n"
          f"wrote {args.out}: use it with --calibration {args.out}")
    return 0


def _cmd_enroll(args) -> int:
    from .deploy.enroll import enroll

    speaker, warnings = enroll(_load(args), args.db, args.name, args.audio, replace=args.replace,
                               progress=not args.quiet)
    _warn(warnings)
    print(f"enrolled '{speaker.name}' in {args.db}: {speaker.count} recording(s) in all")
    return 0


def _cmd_identify(args) -> int:
    from .deploy.enroll import identify

    result = identify(_load(args), args.db, args.audio, top=args.top)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    _warn(result.warnings)
    for rank, c in enumerate(result.candidates, start=1):
        decision = "" if c["accepted"] is None else ("  accepted" if c["accepted"] else "  rejected")
        llr = "" if c["llr"] is None else f"  LLR {c['llr']:+.3f}"
        print(f"{rank}. {c['name']}  score {c['score']:.4f}{llr}{decision}")
    return 0


def _cmd_speakers(args) -> int:
    from .deploy.speakerdb import SpeakerDB

    model = _load(args)
    with SpeakerDB.open(args.db, model.fingerprint, create=False) as db:
        if args.remove:
            db.remove(args.remove)
            print(f"removed '{args.remove}' from {args.db}")
            return 0
        for name in db.names():
            speaker = db.get(name)
            print(f"{name}\t{speaker.count} recording(s)\tupdated {speaker.updated}")
    return 0


def _cmd_export(args) -> int:
    from .inference.export import export_network

    report = export_network(args.model, args.format, args.out)
    if report["verified"]:
        worst = max(report["max_abs_diff"].values())
        lengths = ", ".join(str(length) for length in report["max_abs_diff"])
        check = f"matches PyTorch (max abs difference {worst:.2g} at {lengths} samples)"
    else:
        check = "not verified (install onnxruntime to check it against PyTorch)"
    print(f"wrote {args.out} ({args.format}, {report['exporter']}; input (batch, samples) at 16 kHz, "
          f"any length; output (batch, embedding_dim)): {check}")
    return 0


def _cmd_score(args) -> int:
    from .evaluate.pipeline import score_file

    count = score_file(args.trials, args.embeddings, args.out, cohort_path=args.snorm, top_n=args.top)
    kind = f"adaptive s-norm (top {args.top})" if args.snorm else "cosine"
    print(f"wrote {count} {kind} scores to {args.out}")
    return 0


def _cmd_eval(args) -> int:
    from .evaluate.pipeline import evaluate_score_file

    for option, path in (("--plot", args.plot), ("--hist", args.hist)):
        if path and not path.lower().endswith((".png", ".pdf", ".svg")):
            raise VoxmetricError(f"eval {option} {path}: use a .png, .pdf or .svg file name")
    metrics = evaluate_score_file(args.trials, args.scores, plot_path=args.plot, json_path=args.out,
                                  n_bootstrap=args.bootstrap, seed=args.seed, histogram_path=args.hist)
    ci = metrics["eer_ci"]
    ci_text = f" (95% CI {ci[0] * 100:.2f}-{ci[1] * 100:.2f})" if ci else ""
    print(f"EER {metrics['eer'] * 100:.2f}%{ci_text}, "
          f"minDCF(0.01) {metrics['min_dcf'][0.01]['min_dcf']:.4f}, "
          f"minDCF(0.05) {metrics['min_dcf'][0.05]['min_dcf']:.4f}, "
          f"{metrics['n_target']} target / {metrics['n_nontarget']} non-target trials")
    if args.json:
        print(json.dumps(metrics, default=str))
    return 0


def _cmd_compare(args) -> int:
    from .training.compare import compare, compare_scale, parse_train_speakers
    from .training.config import load_config

    config = load_config(args.config, args.set)
    losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    out = args.out or _default_exp_dir(args.config) + "-compare"
    train_speakers = parse_train_speakers(args.train_speakers)
    if train_speakers:
        _, plot = compare_scale(config, losses, out, train_speakers, budget=args.budget, seeds=args.seeds,
                                threads=args.threads, progress=not args.quiet)
        print(f"\nresults: {out}/scale.md  plot: {plot}")
        return 0
    report = compare(config, losses, out, budget=args.budget, seeds=args.seeds, threads=args.threads,
                     progress=not args.quiet)
    print(report.table)
    print(f"\nresults: {report.results_md}  plots: {report.det_plot}")
    return 0


def _cmd_demo(args) -> int:
    from .training.demo import run_demo

    if args.seeds < 3:
        raise VoxmetricError(f"demo --seeds must be at least 3 (one seed cannot separate a loss from luck), "
                             f"got {args.seeds}")
    return run_demo(args.out, seeds=args.seeds, progress=not args.quiet)


_MODEL_HELP = "bundled model name (sinctdnn-aam, ecapa-aam), exported .safetensors file or training checkpoint"


def _add_model_options(parser: argparse.ArgumentParser, calibration: bool = True) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    parser.add_argument("--no-vad", action="store_true", help="embed whole recordings (no speech detection)")
    if calibration:
        parser.add_argument("--calibration", metavar="CAL.json", help="calibration from 'voxmetric calibrate'")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxmetric",
        description="End-to-end speaker verification with metric learning.",
        epilog="Run 'voxmetric COMMAND --help' for a command's options.",
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"voxmetric {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("synth", help="generate the built-in synthetic multi-speaker corpus",
                       description="Generate the built-in corpus: VoxCeleb layout, train/val/test speakers, trials.")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--speakers", type=int, default=40, metavar="N", help="number of speakers (default 40)")
    p.add_argument("--utterances", type=int, default=12, metavar="K", help="utterances per speaker (default 12)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus made with other settings")
    _add_common(p)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("train", help="train an embedding network from a YAML config",
                       description="Train a network; checkpoints every epoch; --resume continues exactly. "
                                   "Under 'torchrun --nproc_per_node N' it trains with DDP.")
    p.add_argument("config", metavar="CONFIG.yml")
    p.add_argument("--out", metavar="EXP_DIR", help="experiment folder (default exp/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from EXP_DIR/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's checkpoints and logs in EXP_DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=5 (repeatable)")
    _add_common(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("embed", help="extract embeddings of audio files",
                       description="Embed audio files with a trained model (sliding windows averaged).")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("audio", nargs="*", metavar="AUDIO")
    p.add_argument("--list", metavar="FILE", help="file with one audio path per line")
    p.add_argument("--root", metavar="DIR", help="the paths are relative to DIR and stored as given (e.g. the "
                                                 "keys of a trial list, for 'voxmetric score')")
    p.add_argument("--out", required=True, metavar="EMB_FILE", help="output .npz or .safetensors")
    p.add_argument("--window", type=float, metavar="S",
                   help="window in seconds; 0 = whole file (default: the model's, 3.0 for checkpoints)")
    p.add_argument("--step", type=float, metavar="S",
                   help="window step in seconds (default: the model's, 0.1 for checkpoints)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--no-vad", action="store_true",
                   help="embed whole files (default: trim non-speech first, as verify does)")
    _add_common(p)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("verify", help="same speaker? score, calibrated LLR and decision for two recordings",
                       description="Compare two recordings (or one with an enrolled speaker: --db, --name) with "
                                   "a model: cosine score, calibrated log-likelihood ratio and the decision at the "
                                   "model's threshold. Non-speech is trimmed first; quality problems are warned "
                                   "about. Exit status 0 whatever the decision.")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="A.wav B.wav, or one recording with --db/--name")
    p.add_argument("--db", metavar="DB", help="speaker database written by 'voxmetric enroll'")
    p.add_argument("--name", help="enrolled speaker to verify against (with --db)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _add_model_options(p)
    _add_common(p)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("calibrate", help="fit score calibration and threshold on your own labelled pairs",
                       description="Embed and score your own trial list (LABEL A B per line), fit the score -> "
                                   "log-likelihood-ratio calibration and choose the threshold (the EER point, or "
                                   "--target-far), with bootstrap 95%% confidence intervals.")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--trials", required=True, metavar="TRIALS", help="your labelled pairs")
    p.add_argument("--root", metavar="DIR", help="folder the trial paths are relative to (default: the list's)")
    p.add_argument("--out", default="calibration.json", metavar="CAL.json", help="default calibration.json")
    p.add_argument("--target-far", type=float, metavar="F", help="threshold for this false-acceptance rate")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap rounds (default 1000)")
    _add_model_options(p, calibration=False)
    _add_common(p)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("enroll", help="enrol a speaker from recordings into a speaker database",
                       description="Embed the recordings, average them in the normalised embedding space and "
                                   "store the speaker in DB (an SQLite file, created if missing).")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--name", required=True)
    p.add_argument("audio", nargs="+", metavar="AUDIO")
    p.add_argument("--db", required=True, metavar="DB")
    p.add_argument("--replace", action="store_true", help="replace the speaker's recordings instead of adding")
    _add_model_options(p, calibration=False)
    _add_common(p)
    p.set_defaults(func=_cmd_enroll)

    p = sub.add_parser("identify", help="who is speaking? the closest enrolled speakers")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("audio", metavar="AUDIO")
    p.add_argument("--db", required=True, metavar="DB")
    p.add_argument("--top", type=int, default=3, metavar="N", help="candidates to show (default 3)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _add_model_options(p)
    _add_common(p)
    p.set_defaults(func=_cmd_identify)

    p = sub.add_parser("speakers", help="list (or --remove) the speakers of a speaker database")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--db", required=True, metavar="DB")
    p.add_argument("--remove", metavar="NAME", help="remove this speaker")
    _add_model_options(p, calibration=False)
    _add_common(p)
    p.set_defaults(func=_cmd_speakers)

    p = sub.add_parser("export", help="export a model's network to ONNX or TorchScript",
                       description="Export the inference network (batch, samples) -> (batch, embedding_dim), "
                                   "variable length, checked against PyTorch after writing. Windows, level "
                                   "normalisation and calibration are not included.")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="output format")
    p.add_argument("out", metavar="OUT", help="file to write (.onnx, .pt)")
    _add_common(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("score", help="score a trial list from embeddings (cosine, adaptive s-norm)")
    p.add_argument("--trials", required=True, metavar="TRIALS")
    p.add_argument("--embeddings", required=True, metavar="EMB_FILE")
    p.add_argument("--snorm", metavar="COHORT_EMB", help="cohort embeddings for adaptive s-norm")
    p.add_argument("--top", type=int, default=400, metavar="N", help="cohort size per side (default 400)")
    p.add_argument("--out", required=True, metavar="SCORES", help="output: 'score path1 path2' per line")
    _add_common(p)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("eval", help="EER with 95%% CI, minDCF, DET plot from scores")
    p.add_argument("--trials", required=True, metavar="TRIALS")
    p.add_argument("--scores", required=True, metavar="SCORES")
    p.add_argument("--plot", metavar="DET.png", help="write a DET curve")
    p.add_argument("--hist", metavar="HIST.png", help="write target / non-target score histograms")
    p.add_argument("--out", metavar="RESULTS.json", help="write metrics as JSON (and .md beside it)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap rounds for the CI")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    _add_common(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("compare", help="train and evaluate one model per loss, write the paper-style table")
    p.add_argument("config", metavar="CONFIG.yml")
    p.add_argument("--losses", default="ce,center,coco,aam,contrastive,triplet",
                   help="comma-separated loss names (default: the six of the paper)")
    p.add_argument("--out", metavar="DIR", help="output folder (default exp/<config name>-compare)")
    p.add_argument("--budget", metavar="N|Nmin",
                   help="training budget per run: a number of batches (default: the config's epochs), or minutes "
                        "with 'min' (e.g. 2min; then results depend on the machine's speed and load)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train every loss N times (seeds config.seed .. +N-1); intervals and tests cover seeds")
    p.add_argument("--train-speakers", metavar="N,N,...",
                   help="repeat the comparison with nested subsets of this many training speakers; plot scale.png")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (fixed: reproducible floats)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    _add_common(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("demo", help="the main job end to end on the built-in corpus: 6 losses x 3 seeds, deterministic")
    p.add_argument("--out", default="demo", metavar="DIR", help="output folder (default ./demo)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="training seeds per loss, at least 3 (default 3)")
    _add_common(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VoxmetricError as error:
        print(f"voxmetric: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("voxmetric: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
