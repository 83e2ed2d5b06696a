"""Commands that embed, score, evaluate and export: embed, score, eval, export."""

from __future__ import annotations

import sys

from ..errors import UsageError
from ..evaluate.metrics import DEFAULT_N_BOOTSTRAP
from ..evaluate.scoring import DEFAULT_TOP_N
from .common import (EXIT_OK, _MODEL_HELP, _add_jobs, _add_model, _add_quiet, _add_skip_errors, _check_outputs,
                    _command, _finish, _jobs, _load, _warner, int_at_least)


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
    p.add_argument("-o", "--out", required=True, metavar="EMB_FILE", help="output .npz or .safetensors")
    p.add_argument("--window", type=float, metavar="S",
                   help="window in seconds; 0 = whole file (default: the model's; a checkpoint's is the one "
                        "validation chose at the end of training)")
    p.add_argument("--step", type=float, metavar="S",
                   help="window step in seconds (default: the model's, as for --window)")
    _add_skip_errors(p)
    _add_jobs(p)
    _add_quiet(p)
    p.set_defaults(func=_run_embed)

def _run_embed(args) -> int:
    from ..evaluate.embeddings import check_embeddings_output
    from ..inference.batch import embed_to_file, errors_path, gather_inputs

    changes = window_settings(args.window, args.step)
    check_embeddings_output(args.out)
    _check_outputs(errors_path(args.out) if args.skip_errors else None)
    jobs = _jobs(args)
    ids, paths = gather_inputs(args.audio, args.list, args.root)
    model = _load(args)
    model.set_frontend(**changes)
    (count, dim), failures = embed_to_file(model, ids, paths, args.out, skip_errors=args.skip_errors,
                                           progress=not args.quiet, on_warning=_warner(args), jobs=jobs)
    print(f"wrote {count} embeddings of dimension {dim} to {args.out}")
    return _finish(failures, args.out)

def window_settings(window: float | None, step: float | None) -> dict:
    """Front-end changes for ``--window`` / ``--step`` (``--window 0`` = whole file)."""
    from ..inference.frontend import FrontendSettings

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

def add_export(sub) -> None:
    from ..deploy.exporting import EXPORT_FORMATS

    p = _command(sub, "export", "export a model to ONNX, TorchScript or a voxmetric weights file",
                 "ONNX / TorchScript: the inference network (batch, samples) -> (batch, embedding_dim), "
                 "any length from the network's minimum (printed), checked against PyTorch after writing; "
                 "level normalisation is in the graph where the network allows it; what a runtime must do "
                 "outside it (sample rate, high-pass, VAD, windows, level if not in the graph) and the model's "
                 "threshold, calibration and fingerprint are in the file's metadata (README, 'Deploying an "
                 "exported model'). safetensors: a voxmetric weights file with the front-end settings, "
                 "calibration and threshold, usable as MODEL by every command.",
                 "voxmetric export exp/aam/checkpoints/best.pt --format safetensors aam.safetensors "
                 "--calibration cal.json")
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, metavar="FORMAT",
                   help=f"output format: {', '.join(EXPORT_FORMATS)}")
    p.add_argument("out", metavar="OUT", help="file to write: *.onnx, *.pt (TorchScript) or *.safetensors; a name "
                                              "ending as another format's is refused")
    p.add_argument("--calibration", metavar="CAL.json",
                   help="safetensors: store this calibration and threshold, made for this model by 'voxmetric "
                        "calibrate' (default: the model's)")
    _add_quiet(p)
    p.set_defaults(func=_run_export)

def _run_export(args) -> int:
    from ..deploy.exporting import export_model

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
    level = "level normalisation in the graph" if report["level_in_graph"] else "level normalisation outside it"
    print(f"wrote {args.out} ({args.format}, {report['exporter']}; input (batch, samples) at 16 kHz, "
          f"at least {report['min_samples']} samples; output (batch, embedding_dim); {level}): {check}")
    return EXIT_OK

def add_score(sub) -> None:
    p = _command(sub, "score", "score a trial list from embeddings (cosine, adaptive s-norm)",
                 "Cosine score of every trial from an embeddings file ('voxmetric embed'), optionally "
                 "adaptive s-norm against a cohort. Embeddings of different models are refused.",
                 "voxmetric score --trials trials.txt --embeddings emb.npz --snorm cohort.npz --out scores.txt")
    p.add_argument("--trials", required=True, metavar="TRIALS", help="trial list")
    p.add_argument("--embeddings", required=True, metavar="EMB_FILE", help="embeddings of the trial files")
    p.add_argument("--root", metavar="DIR", help="the trial keys are relative to DIR and the embedding ids "
                                                 "absolute paths: match them as files (ids already equal to "
                                                 "the keys, as 'embed --root' stores them, match as they are)")
    p.add_argument("--snorm", metavar="COHORT_EMB", help="cohort embeddings for adaptive s-norm")
    p.add_argument("--top", type=int_at_least(2), default=DEFAULT_TOP_N, metavar="N",
                   help="cohort scores kept per side (at most the cohort's size)")
    p.add_argument("-o", "--out", required=True, metavar="SCORES", help="output: 'score path1 path2' per line")
    _add_quiet(p)
    p.set_defaults(func=_run_score)

def _run_score(args) -> int:
    from ..evaluate.pipeline import score_file

    summary = score_file(args.trials, args.embeddings, args.out, cohort_path=args.snorm, top_n=args.top,
                         root=args.root)
    kind = (f"adaptive s-norm (top {summary['top_n']} of a cohort of {summary['cohort_size']} embeddings)"
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
    p.add_argument("-o", "--out", metavar="RESULTS.json", help="write metrics as JSON (and .md beside it)")
    p.add_argument("--bootstrap", type=int_at_least(0), default=DEFAULT_N_BOOTSTRAP, metavar="N",
                   help="bootstrap rounds for the CI (0: no CI)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="bootstrap random seed")
    p.add_argument("--json", action="store_true",
                   help="print the metrics as JSON on standard output (the summary lines go to stderr)")
    _add_quiet(p)
    p.set_defaults(func=_run_eval)

def _run_eval(args) -> int:
    from ..evaluate.pipeline import evaluate_score_files
    from ..fileio import dumps_json

    metrics, written = evaluate_score_files(args.trials, args.scores, plot_path=args.plot, json_path=args.out,
                                            n_bootstrap=args.bootstrap, seed=args.seed, histogram_path=args.hist)
    summary = sys.stderr if args.json else sys.stdout
    for name, result in metrics.items():
        ci = result["eer_ci"]
        ci_text = f" (95% CI {ci[0] * 100:.2f}-{ci[1] * 100:.2f})" if ci else ""
        prefix = f"{name}: " if len(metrics) > 1 else ""
        print(f"{prefix}EER {result['eer'] * 100:.2f}%{ci_text}, "
              f"minDCF(0.01) {result['min_dcf'][0.01]['min_dcf']:.4f}, "
              f"minDCF(0.05) {result['min_dcf'][0.05]['min_dcf']:.4f}, "
              f"{result['n_target']} target / {result['n_nontarget']} non-target trials", file=summary)
    if args.json:
        print(dumps_json(next(iter(metrics.values())) if len(metrics) == 1 else metrics))
    if written:
        print(f"wrote {', '.join(written)}", file=sys.stderr)
    return EXIT_OK
