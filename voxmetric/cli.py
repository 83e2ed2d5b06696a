"""Command line (SPEC section 4): parsing only; every command calls a library function.

One ``add_<command>(subparsers)`` function per subcommand declares its arguments, help and
example; the ``_run_<command>`` beside it calls the library and prints.

Exit status (:data:`EXIT_OK` ...): 0 success; 1 an error caused by input (a file, a config
field), printed on one line as ``voxmetric: error: ...``, nothing half-written; 2 a usage
error (the command's usage is shown); 3 partial success with ``--skip-errors``: the results
of the good inputs were written, each failure is listed on stderr and in ``OUT.errors.tsv``;
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UsageError, VoxmetricError
from .evaluate.metrics import DEFAULT_N_BOOTSTRAP
from .evaluate.scoring import DEFAULT_TOP_N

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""Exit statuses: success, input error, usage error, partial success (``--skip-errors``), interrupted."""

EXIT_STATUS_HELP = ("exit status: 0 success, 1 error (one line on stderr, nothing half-written), 2 usage error, "
                    "3 partial (--skip-errors: some inputs failed; see stderr and OUT.errors.tsv), "
                    "130 / 143 interrupted by SIGINT / SIGTERM (train saves a checkpoint first)")

_MODEL_HELP = "bundled model name (sinctdnn-aam, ecapa-aam), exported .safetensors file or training checkpoint"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's example lines; appends each option's default to its help."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is argparse.SUPPRESS or not action.option_strings or "default" in text.lower():
            return text
        if isinstance(action, (argparse._StoreTrueAction,)):
            return f"{text} (default: off)"
        if action.default in (None, [], ""):
            return text
        return f"{text} (default: %(default)s)"


def _command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    import textwrap

    parser = sub.add_parser(name, help=help, description=textwrap.fill(description, 88, break_on_hyphens=False), formatter_class=_Formatter,
                            epilog=f"example:\n  {example}\n\n{EXIT_STATUS_HELP}")
    parser.set_defaults(command_parser=parser)
    return parser


# --- shared options ----------------------------------------------------------------------


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars and no quality warnings (errors are still printed)")


def _add_model(parser: argparse.ArgumentParser, calibration: bool = True, optional: bool = False) -> None:
    parser.add_argument("model", metavar="MODEL", nargs="?" if optional else None, help=_MODEL_HELP)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--no-vad", action="store_true",
                        help="embed whole recordings (default: trim non-speech first)")
    if calibration:
        parser.add_argument("--calibration", metavar="CAL.json",
                            help="calibration and threshold from 'voxmetric calibrate' (default: the model's)")


def _add_skip_errors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-errors", action="store_true",
                        help="go on past bad inputs: write the results of the good ones, list each failure on "
                             "stderr and in OUT.errors.tsv, exit with status 3")


def _add_batch_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="FILE", help="write the batch results here (default: standard output)")
    parser.add_argument("--format", choices=["jsonl", "tsv"],
                        help="batch output: JSON Lines, or TSV with a header (default: tsv for *.tsv / *.txt "
                             "names, else jsonl)")


def _load(args):
    from .inference.speaker_model import load_model

    return load_model(args.model, device=args.device, calibration=getattr(args, "calibration", None),
                      vad=not args.no_vad)


def _warner(args):
    """The per-file quality-warning printer (silent with -q)."""
    if args.quiet:
        return None
    return lambda warning: print(f"voxmetric: warning: {warning}", file=sys.stderr)


def _warn(args, warnings) -> None:
    printer = _warner(args)
    for warning in warnings if printer else ():
        printer(warning)


def _finish(failures, out: str | None) -> int:
    """Report ``--skip-errors`` failures (stderr, OUT.errors.tsv); the exit status."""
    from .inference.batch import write_failures

    if out:
        sidecar = write_failures(out, failures)
    else:
        sidecar = None
    for failure in failures:
        print(f"voxmetric: failed: {failure.item}: {failure.reason}", file=sys.stderr)
    if not failures:
        return EXIT_OK
    where = f"; listed in {sidecar}" if sidecar else ""
    print(f"voxmetric: partial: {len(failures)} input(s) failed{where} (exit status {EXIT_PARTIAL})",
          file=sys.stderr)
    return EXIT_PARTIAL


# --- commands ----------------------------------------------------------------------------


def add_synth(sub) -> None:
    p = _command(sub, "synth", "generate the built-in synthetic multi-speaker corpus",
                 "Generate the built-in corpus: VoxCeleb layout, train/val/test speakers, trials.",
                 "voxmetric synth data/synth --speakers 40 --utterances 12")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the corpus to")
    p.add_argument("--speakers", type=int, default=40, metavar="N", help="number of speakers")
    p.add_argument("--utterances", type=int, default=12, metavar="K", help="utterances per speaker")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus made with other settings")
    _add_quiet(p)
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from .data.synth.corpus import synthesize

    print(synthesize(args.out_dir, speakers=args.speakers, utterances=args.utterances, seed=args.seed,
                     overwrite=args.overwrite, progress=not args.quiet))
    return EXIT_OK


def add_train(sub) -> None:
    p = _command(sub, "train", "train an embedding network from a YAML config",
                 "Train a network; checkpoints every epoch; --resume continues exactly. "
                 "Under 'torchrun --nproc_per_node N' it trains with DDP.",
                 "voxmetric train configs/sinctdnn_aam.yml --out exp/aam --set training.epochs=5")
    p.add_argument("config", metavar="CONFIG.yml", help="training configuration")
    p.add_argument("--out", metavar="EXP_DIR", help="experiment folder (default exp/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from EXP_DIR/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's checkpoints and logs in EXP_DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=5 (repeatable; default: none)")
    _add_quiet(p)
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from .training.config import default_exp_dir, load_config
    from .training.trainer import train

    config = load_config(args.config, args.set)
    out = args.out or default_exp_dir(args.config)
    result = train(config, out, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    status = "interrupted, checkpoint saved" if result.interrupted else "done"
    best = f", best validation EER {result.best_eer:.2f}%" if result.best_eer is not None else ""
    print(f"training {status}: {result.epochs_done} epochs, {result.batches_done} batches{best}; "
          f"checkpoints in {out}/checkpoints")
    if result.interrupted:  # the shell convention for a signal: 130 (SIGINT), 143 (SIGTERM)
        return 128 + (result.stop_signal or 15)
    return EXIT_OK


def add_embed(sub) -> None:
    p = _command(sub, "embed", "extract embeddings of audio files or folders",
                 "Embed audio files with a trained model (sliding windows averaged), each once. Folders are "
                 "searched recursively for audio files. The output records the model's fingerprint and "
                 "front-end settings, so 'score' can refuse to mix models.",
                 "voxmetric embed sinctdnn-aam wav/ --out emb.npz --skip-errors")
    _add_model(p, calibration=False)
    p.add_argument("audio", nargs="*", metavar="AUDIO|DIR", help="audio files and folders (searched recursively)")
    p.add_argument("--list", metavar="FILE", help="file with one audio path per line")
    p.add_argument("--root", metavar="DIR", help="the paths are relative to DIR and stored as given (e.g. the "
                                                 "keys of a trial list, for 'voxmetric score')")
    p.add_argument("--out", required=True, metavar="EMB_FILE", help="output .npz or .safetensors")
    p.add_argument("--window", type=float, metavar="S",
                   help="window in seconds; 0 = whole file (default: the model's, 3.0 for checkpoints)")
    p.add_argument("--step", type=float, metavar="S",
                   help="window step in seconds (default: the model's, 0.1 for checkpoints)")
    _add_skip_errors(p)
    _add_quiet(p)
    p.set_defaults(func=_run_embed)


def _run_embed(args) -> int:
    from .inference.batch import embed_to_file, gather_inputs

    ids, paths = gather_inputs(args.audio, args.list, args.root)
    model = _load(args)
    model.set_frontend(**window_settings(args.window, args.step))
    (count, dim), failures = embed_to_file(model, ids, paths, args.out, skip_errors=args.skip_errors,
                                           progress=not args.quiet, on_warning=_warner(args))
    print(f"wrote {count} embeddings of dimension {dim} to {args.out}")
    return _finish(failures, args.out)


def window_settings(window: float | None, step: float | None) -> dict:
    """Front-end changes for ``--window`` / ``--step`` (``--window 0`` = whole file)."""
    from .inference.frontend import FrontendSettings

    changes = {}
    if window is not None:
        changes["window_s"] = None if window == 0 else window
    if step is not None:
        changes["step_s"] = step
    try:
        FrontendSettings(**changes)
    except ValueError as error:
        raise UsageError(f"--window / --step: {error} (--window 0 embeds whole files)") from None
    return changes


def add_verify(sub) -> None:
    p = _command(sub, "verify", "same speaker? score, calibrated LLR and decision",
                 "Compare two recordings (or one with an enrolled speaker: --db, --name) with a model: cosine "
                 "score, calibrated log-likelihood ratio and the decision at the model's threshold. Batch "
                 "modes load the model once: --trials FILE scores a VoxCeleb/Kaldi trial list, --db DB "
                 "--list FILE verifies 'NAME PATH' lines; each file is embedded once. Non-speech is trimmed "
                 "first; quality problems are warned about on stderr. Exit status 0 whatever the decisions.",
                 "voxmetric verify sinctdnn-aam a.wav b.wav\n"
                 "  voxmetric verify sinctdnn-aam --trials trials.txt --out decisions.jsonl --skip-errors")
    _add_model(p)
    p.add_argument("audio", nargs="*", metavar="AUDIO", help="A.wav B.wav, or one recording with --db/--name")
    p.add_argument("--db", metavar="DB", help="speaker database written by 'voxmetric enroll'")
    p.add_argument("--name", help="enrolled speaker to verify against (with --db)")
    p.add_argument("--trials", metavar="TRIALS", help="batch: a trial list ('LABEL A B' or Kaldi 'A B target')")
    p.add_argument("--root", metavar="DIR", help="folder the trial paths are relative to (default: the list's)")
    p.add_argument("--list", metavar="FILE", help="batch with --db: lines 'NAME PATH'")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object (one pair)")
    _add_batch_output(p)
    _add_skip_errors(p)
    _add_quiet(p)
    p.set_defaults(func=_run_verify)


def _run_verify(args) -> int:
    from .deploy.enroll import (VERIFY_LIST_COLUMNS, VERIFY_TRIALS_COLUMNS, verify_enrolled, verify_list,
                                verify_mode, verify_trials)
    from .fileio import dumps_json
    from .inference.batch import format_from_name, write_rows

    mode = verify_mode(args.audio, args.db, args.name, args.trials, args.list)
    model = _load(args)
    options = dict(skip_errors=args.skip_errors, progress=not args.quiet, on_warning=_warner(args))
    if mode in ("trials", "list"):
        if mode == "trials":
            batch, columns = verify_trials(model, args.trials, args.root, **options), VERIFY_TRIALS_COLUMNS
        else:
            batch, columns = verify_list(model, args.db, args.list, **options), VERIFY_LIST_COLUMNS
        write_rows(batch.rows, args.out, format_from_name(args.out, args.format), columns)
        if args.out:
            print(f"wrote {len(batch.rows)} decisions to {args.out}", file=sys.stderr)
        return _finish(batch.failures, args.out)
    if mode == "enrolled":
        result = verify_enrolled(model, args.db, args.name, args.audio[0])
        enrol, test = f"{args.name} ({args.db})", args.audio[0]
    else:
        result = model.verify(*args.audio)
        enrol, test = args.audio
    _warn(args, result.warnings)
    if args.json:
        print(dumps_json({"enrol": enrol, "test": test, "model": args.model, **result.to_dict()}))
        return EXIT_OK
    llr = "n/a (uncalibrated)" if result.llr is None else f"{result.llr:+.3f}"
    decision = "same speaker" if result.accepted else "different speakers"
    print(f"score {result.score:.4f}  LLR {llr}  threshold {result.threshold:.4f}  decision: {decision}")
    return EXIT_OK


def add_calibrate(sub) -> None:
    p = _command(sub, "calibrate", "fit score calibration and threshold on your own labelled pairs",
                 "Embed and score your own trial list (LABEL A B per line), fit the score -> "
                 "log-likelihood-ratio calibration and choose the threshold (the EER point, or "
                 "--target-far), with bootstrap 95% confidence intervals.",
                 "voxmetric calibrate sinctdnn-aam --trials my_pairs.txt --out cal.json")
    _add_model(p, calibration=False)
    p.add_argument("--trials", required=True, metavar="TRIALS", help="your labelled pairs")
    p.add_argument("--root", metavar="DIR", help="folder the trial paths are relative to (default: the list's)")
    p.add_argument("--out", default="calibration.json", metavar="CAL.json", help="calibration file to write")
    p.add_argument("--target-far", type=float, metavar="F",
                   help="threshold for this false-acceptance rate (default: the EER point)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_N_BOOTSTRAP, metavar="N", help="bootstrap rounds")
    _add_skip_errors(p)
    _add_quiet(p)
    p.set_defaults(func=_run_calibrate)


def _run_calibrate(args) -> int:
    from .deploy.calibrate import calibrate_pairs

    result, failures = calibrate_pairs(_load(args), args.trials, audio_root=args.root, target_far=args.target_far,
                                       n_bootstrap=args.bootstrap, skip_errors=args.skip_errors,
                                       progress=not args.quiet, on_warning=_warner(args))
    for warning in result.warnings:  # about the fit itself (too few pairs): printed even with -q
        print(f"voxmetric: warning: {warning}", file=sys.stderr)
    result.save(args.out)
    (elow, ehigh), (tlow, thigh) = result.eer_ci, result.threshold_ci
    point = f"FAR {args.target_far:g}" if args.target_far else "the EER point"
    print(f"EER {result.eer * 100:.2f}% (95% CI {elow * 100:.2f}-{ehigh * 100:.2f}) on {result.n_target} target / "
          f"{result.n_nontarget} non-target pairs\nthreshold {result.threshold:.4f} at {point} "
          f"(95% CI {tlow:.4f}-{thigh:.4f}); LLR = {result.scale:.3f} * score {result.offset:+.3f}\n"
          f"wrote {args.out}: use it with --calibration {args.out}")
    return _finish(failures, args.out)


def add_enroll(sub) -> None:
    p = _command(sub, "enroll", "enrol a speaker from recordings into a speaker database",
                 "Embed the recordings, average them in the normalised embedding space and store the speaker "
                 "in DB (an SQLite file, created if missing, tied to the model).",
                 "voxmetric enroll sinctdnn-aam --name alice alice1.wav alice2.wav --db speakers.db")
    _add_model(p, calibration=False)
    p.add_argument("--name", required=True, help="the speaker's name")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="recordings of the speaker")
    p.add_argument("--db", required=True, metavar="DB", help="speaker database (created if missing)")
    p.add_argument("--replace", action="store_true", help="replace the speaker's recordings instead of adding")
    _add_skip_errors(p)
    _add_quiet(p)
    p.set_defaults(func=_run_enroll)


def _run_enroll(args) -> int:
    from .deploy.enroll import enroll_files

    result = enroll_files(_load(args), args.db, args.name, args.audio, replace=args.replace,
                          progress=not args.quiet, skip_errors=args.skip_errors, on_warning=_warner(args))
    print(f"enrolled '{result.speaker.name}' in {args.db}: {result.speaker.count} recording(s) in all")
    return _finish(result.failures, args.db)


def add_identify(sub) -> None:
    p = _command(sub, "identify", "who is speaking? the closest enrolled speakers",
                 "Rank the speakers of a database by similarity to a recording; --list FILE does it for many "
                 "recordings with one model load (JSON Lines, or TSV one row per candidate).",
                 "voxmetric identify sinctdnn-aam unknown.wav --db speakers.db --top 3\n"
                 "  voxmetric identify sinctdnn-aam --db speakers.db --list calls.txt --out who.tsv")
    _add_model(p)
    p.add_argument("audio", nargs="?", metavar="AUDIO", help="the recording (or --list FILE)")
    p.add_argument("--db", required=True, metavar="DB", help="speaker database written by 'voxmetric enroll'")
    p.add_argument("--list", metavar="FILE", help="batch: one recording path per line")
    p.add_argument("--top", type=int, default=3, metavar="N", help="candidates to show")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object (one recording)")
    _add_batch_output(p)
    _add_skip_errors(p)
    _add_quiet(p)
    p.set_defaults(func=_run_identify)


def _run_identify(args) -> int:
    from .deploy.enroll import IDENTIFY_COLUMNS, identification_rows, identify, identify_list
    from .fileio import dumps_json
    from .inference.batch import format_from_name, read_list, write_rows

    if bool(args.audio) == bool(args.list):
        raise UsageError("give one recording or --list FILE")
    if args.list:
        paths = [row[0] for row in read_list(args.list)]
        model = _load(args)
        batch = identify_list(model, args.db, paths, top=args.top, skip_errors=args.skip_errors,
                              progress=not args.quiet, on_warning=_warner(args))
        fmt = format_from_name(args.out, args.format)
        write_rows(identification_rows(batch.rows) if fmt == "tsv" else batch.rows, args.out, fmt, IDENTIFY_COLUMNS)
        if args.out:
            print(f"wrote {len(batch.rows)} identifications to {args.out}", file=sys.stderr)
        return _finish(batch.failures, args.out)
    result = identify(_load(args), args.db, args.audio, top=args.top)
    _warn(args, result.warnings)
    if args.json:
        print(dumps_json(result.to_dict()))
        return EXIT_OK
    for rank, c in enumerate(result.candidates, start=1):
        decision = "" if c["accepted"] is None else ("  accepted" if c["accepted"] else "  rejected")
        llr = "" if c["llr"] is None else f"  LLR {c['llr']:+.3f}"
        print(f"{rank}. {c['name']}  score {c['score']:.4f}{llr}{decision}")
    return EXIT_OK


def add_speakers(sub) -> None:
    p = _command(sub, "speakers", "list (or --remove) the speakers of a speaker database",
                 "List the enrolled speakers (name, recordings, last update) and say which model the database "
                 "belongs to (on stderr). MODEL is optional: the database records its model's fingerprint; "
                 "given, it must match.",
                 "voxmetric speakers --db speakers.db")
    _add_model(p, calibration=False, optional=True)
    p.add_argument("--db", required=True, metavar="DB", help="speaker database")
    p.add_argument("--remove", metavar="NAME", help="remove this speaker")
    _add_quiet(p)
    p.set_defaults(func=_run_speakers)


def _run_speakers(args) -> int:
    from .deploy.enroll import list_speakers, remove_speaker

    model = _load(args) if args.model else None
    if args.remove:
        remove_speaker(args.db, args.remove, model)
        print(f"removed '{args.remove}' from {args.db}")
        return EXIT_OK
    model_id, speakers = list_speakers(args.db, model)
    print(f"{args.db}: {len(speakers)} speaker(s), embeddings of model {model_id}", file=sys.stderr)
    for speaker in speakers:
        print(f"{speaker.name}\t{speaker.count} recording(s)\tupdated {speaker.updated}")
    return EXIT_OK


def add_export(sub) -> None:
    from .deploy.exporting import EXPORT_FORMATS

    p = _command(sub, "export", "export a model to ONNX, TorchScript or a voxmetric weights file",
                 "ONNX / TorchScript: the inference network (batch, samples) -> (batch, embedding_dim), "
                 "variable length, checked against PyTorch after writing (windows, level normalisation and "
                 "calibration are not included). safetensors: a voxmetric weights file with the front-end "
                 "settings, calibration and threshold, usable as MODEL by every command.",
                 "voxmetric export exp/aam/checkpoints/best.pt --format safetensors aam.safetensors "
                 "--calibration cal.json")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="output format")
    p.add_argument("out", metavar="OUT", help="file to write (.onnx, .pt, .safetensors)")
    p.add_argument("--calibration", metavar="CAL.json",
                   help="safetensors: store this calibration and threshold (default: the model's)")
    _add_quiet(p)
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from .deploy.exporting import export_model

    report = export_model(args.model, args.format, args.out, calibration=args.calibration)
    if args.format == "safetensors":
        calibrated = "with calibration" if report["calibrated"] else "without calibration (use --calibration)"
        print(f"wrote {args.out} (voxmetric weights, {report['bytes']} bytes, sha256 {report['sha256'][:16]}..., "
              f"{calibrated}; float16 rounding keeps cosine >= {report['min_cosine_vs_float32']:.6f})")
        return EXIT_OK
    if report["verified"]:
        worst = max(report["max_abs_diff"].values())
        lengths = ", ".join(str(length) for length in report["max_abs_diff"])
        check = f"matches PyTorch (max abs difference {worst:.2g} at {lengths} samples)"
    else:
        check = "not verified (install onnxruntime to check it against PyTorch)"
    print(f"wrote {args.out} ({args.format}, {report['exporter']}; input (batch, samples) at 16 kHz, "
          f"any length; output (batch, embedding_dim)): {check}")
    return EXIT_OK


def add_score(sub) -> None:
    p = _command(sub, "score", "score a trial list from embeddings (cosine, adaptive s-norm)",
                 "Cosine score of every trial from an embeddings file ('voxmetric embed'), optionally "
                 "adaptive s-norm against a cohort. Embeddings of different models are refused.",
                 "voxmetric score --trials trials.txt --embeddings emb.npz --snorm cohort.npz --out scores.txt")
    p.add_argument("--trials", required=True, metavar="TRIALS", help="trial list")
    p.add_argument("--embeddings", required=True, metavar="EMB_FILE", help="embeddings of the trial files")
    p.add_argument("--root", metavar="DIR", help="the trial keys are relative to DIR and the embedding ids "
                                                 "absolute paths: match them as files")
    p.add_argument("--snorm", metavar="COHORT_EMB", help="cohort embeddings for adaptive s-norm")
    p.add_argument("--top", type=int, default=DEFAULT_TOP_N, metavar="N",
                   help="cohort scores kept per side (at most the cohort's size)")
    p.add_argument("--out", required=True, metavar="SCORES", help="output: 'score path1 path2' per line")
    _add_quiet(p)
    p.set_defaults(func=_run_score)


def _run_score(args) -> int:
    from .evaluate.pipeline import score_file

    summary = score_file(args.trials, args.embeddings, args.out, cohort_path=args.snorm, top_n=args.top,
                         root=args.root)
    kind = (f"adaptive s-norm (top {summary['top_n']} of a {summary['cohort_size']}-speaker cohort)"
            if args.snorm else "cosine")
    print(f"wrote {summary['count']} {kind} scores to {args.out}")
    return EXIT_OK


def add_eval(sub) -> None:
    p = _command(sub, "eval", "EER with 95%% CI, minDCF, DET plot from scores",
                 "EER with its bootstrap 95% CI and minDCF of one or more score files against a trial list; "
                 "several --scores give one DET plot and one table row per system.",
                 "voxmetric eval --trials trials.txt --scores cosine.txt --scores snorm.txt --plot det.png "
                 "--out results.json")
    p.add_argument("--trials", required=True, metavar="TRIALS", help="trial list")
    p.add_argument("--scores", required=True, action="extend", nargs="+", metavar="SCORES",
                   help="score file(s) from 'voxmetric score' (repeatable: one system each)")
    p.add_argument("--plot", metavar="DET.png", help="write a DET curve (.png, .pdf or .svg)")
    p.add_argument("--hist", metavar="HIST.png", help="write target / non-target score histograms (first system)")
    p.add_argument("--out", metavar="RESULTS.json", help="write metrics as JSON (and .md beside it)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_N_BOOTSTRAP, metavar="N", help="bootstrap rounds for the CI")
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    _add_quiet(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    from .evaluate.pipeline import evaluate_score_files
    from .fileio import dumps_json

    metrics, written = evaluate_score_files(args.trials, args.scores, plot_path=args.plot, json_path=args.out,
                                            n_bootstrap=args.bootstrap, seed=args.seed, histogram_path=args.hist)
    for name, result in metrics.items():
        ci = result["eer_ci"]
        ci_text = f" (95% CI {ci[0] * 100:.2f}-{ci[1] * 100:.2f})" if ci else ""
        prefix = f"{name}: " if len(metrics) > 1 else ""
        print(f"{prefix}EER {result['eer'] * 100:.2f}%{ci_text}, "
              f"minDCF(0.01) {result['min_dcf'][0.01]['min_dcf']:.4f}, "
              f"minDCF(0.05) {result['min_dcf'][0.05]['min_dcf']:.4f}, "
              f"{result['n_target']} target / {result['n_nontarget']} non-target trials")
    if args.json:
        print(dumps_json(next(iter(metrics.values())) if len(metrics) == 1 else metrics))
    if written:
        print(f"wrote {', '.join(written)}", file=sys.stderr)
    return EXIT_OK


def add_compare(sub) -> None:
    p = _command(sub, "compare", "train and evaluate one model per loss, write the paper-style table",
                 "Train every loss with the same config, batches and seeds, evaluate each on the test trials "
                 "(cosine and s-norm) and write results.md / results.json (per-seed EER and minDCF, intervals "
                 "over seeds and trials, Holm-corrected pairwise tests, the ranking as far as they support it), "
                 "scores and DET / training-curve plots.",
                 "voxmetric compare configs/synth.yml --losses aam,triplet --seeds 3")
    p.add_argument("config", metavar="CONFIG.yml", help="training configuration shared by every loss")
    p.add_argument("--losses", default="ce,center,coco,aam,contrastive,triplet",
                   help="comma-separated loss names (default: the six of the paper)")
    p.add_argument("--out", metavar="DIR", help="output folder (default exp/<config name>-compare)")
    p.add_argument("--budget", metavar="N|Nmin",
                   help="training budget per run: a number of batches (default: the config's epochs), or minutes "
                        "with 'min' (e.g. 2min; then results depend on the machine's speed and load)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train every loss N times (seeds config.seed .. +N-1); intervals and tests cover seeds "
                        "(default 1)")
    p.add_argument("--train-speakers", metavar="N,N,...",
                   help="repeat the comparison with nested subsets of this many training speakers and plot "
                        "scale.png (default: all speakers once)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch intra-op threads, fixed so that floats are reproducible (default: torch's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable; default: none)")
    _add_quiet(p)
    p.set_defaults(func=_run_compare)


def _run_compare(args) -> int:
    from .training.compare import compare, compare_scale, parse_losses, parse_train_speakers
    from .training.config import default_exp_dir, load_config

    config = load_config(args.config, args.set)
    out = args.out or default_exp_dir(args.config) + "-compare"
    losses = parse_losses(args.losses)
    train_speakers = parse_train_speakers(args.train_speakers)
    if train_speakers:
        _, plot = compare_scale(config, losses, out, train_speakers, budget=args.budget, seeds=args.seeds,
                                threads=args.threads, progress=not args.quiet)
        print(f"\nresults: {out}/scale.md  plot: {plot}")
        return EXIT_OK
    report = compare(config, losses, out, budget=args.budget, seeds=args.seeds, threads=args.threads,
                     progress=not args.quiet)
    print(report.table)
    print(f"\nresults: {report.results_md}  plots: {report.det_plot}")
    return EXIT_OK


def add_demo(sub) -> None:
    p = _command(sub, "demo", "the main job end to end on the built-in corpus: 6 losses x 3 seeds, deterministic",
                 "Synthesise the corpus, train the paper's six losses for a fixed number of batches with 3 seeds "
                 "each, test them and print the comparison with intervals and significance tests; the same "
                 "machine prints the same table every time.",
                 "voxmetric demo --out demo")
    p.add_argument("--out", default="demo", metavar="DIR", help="output folder (default ./demo)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="training seeds per loss, at least 3 (default 3)")
    _add_quiet(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from .training.demo import run_demo

    if args.seeds < 3:
        raise UsageError(f"demo --seeds must be at least 3 (one seed cannot separate a loss from luck), "
                         f"got {args.seeds}")
    return run_demo(args.out, seeds=args.seeds, progress=not args.quiet)


def add_serve(sub) -> None:
    from .deploy.serve.cli import add_serve as add

    add(sub)


COMMANDS = [add_synth, add_train, add_embed, add_score, add_eval, add_compare, add_verify, add_export, add_demo,
            add_calibrate, add_enroll, add_identify, add_speakers, add_serve]
"""The subcommands, in help order; other packages add theirs with :func:`register`."""

_EXTRA: list = []


def register(add_command) -> None:
    """Add a subcommand: ``add_command(subparsers)`` declares it (with ``set_defaults(func=...)``)."""
    if add_command not in _EXTRA:
        _EXTRA.append(add_command)


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="voxmetric",
        description="End-to-end speaker verification with metric learning.",
        epilog=f"Run 'voxmetric COMMAND --help' for a command's options and an example.\n{EXIT_STATUS_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voxmetric {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS + _EXTRA:
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    command_parser = getattr(args, "command_parser", parser)
    if extra and command_parser is not parser:
        # Files after options ('embed MODEL --root DIR a.wav b.wav'): parse the command's own arguments
        # intermixed; what is still unknown is reported with the command's usage, not the top-level one.
        own = command_parser.parse_intermixed_args(argv[argv.index(args.command) + 1:])
        args = argparse.Namespace(**{**vars(args), **vars(own)})
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except UsageError as error:
        command_parser.print_usage(sys.stderr)
        print(f"{command_parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except VoxmetricError as error:
        print(f"voxmetric: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("voxmetric: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
