"""Commands for deployment: verify, calibrate, enroll, identify, speakers, serve."""

from __future__ import annotations

import sys

from ..errors import UsageError
from ..evaluate.metrics import DEFAULT_N_BOOTSTRAP
from .common import (EXIT_OK, EXIT_STATUS_HELP, _MODEL_HELP, _add_batch_output, _add_jobs, _add_model,
                     _add_quiet, _add_skip_errors, _check_outputs, _command, _finish, _Formatter, _jobs, _load,
                     _warn, _warner, int_at_least)


def _check_one_result_output(args) -> None:
    if args.json and (args.out or args.format):
        raise UsageError("--json prints the result as one JSON object; --out / --format write it as a row like "
                         "the batch modes: give one or the other")


def add_verify(sub) -> None:
    p = _command(sub, "verify", "same speaker? score, calibrated LLR and decision",
                 "Compare two recordings (or one with an enrolled speaker: --db, --name) with a model: cosine "
                 "score, calibrated log-likelihood ratio and the decision at the model's threshold. Batch "
                 "modes load the model once: --trials FILE scores a VoxCeleb/Kaldi trial list, --db DB "
                 "--list FILE verifies 'NAME PATH' lines; each file is embedded once. --out / --format write "
                 "one pair's decision as a row too. Non-speech is trimmed first; quality problems are warned "
                 "about on stderr. Exit status 0 whatever the decisions.",
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
    _add_jobs(p)
    _add_quiet(p)
    p.set_defaults(func=_run_verify)

def _run_verify(args) -> int:
    from ..deploy.enroll import (VERIFY_LIST_COLUMNS, VERIFY_PAIR_COLUMNS, VERIFY_TRIALS_COLUMNS, verify_enrolled,
                                 verify_list, verify_mode, verify_trials)
    from ..fileio import dumps_json
    from ..inference.batch import format_from_name, write_rows

    mode = verify_mode(args.audio, args.db, args.name, args.trials, args.list)
    if mode in ("pair", "enrolled"):
        _check_one_result_output(args)
    _check_outputs(args.out)
    jobs = _jobs(args)
    model = _load(args)
    options = dict(skip_errors=args.skip_errors, progress=not args.quiet, on_warning=_warner(args), jobs=jobs)
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
        row, columns = {"name": args.name, "path": test}, VERIFY_LIST_COLUMNS
    else:
        result = model.verify(*args.audio)
        enrol, test = args.audio
        row, columns = {"enrol": enrol, "test": test}, VERIFY_PAIR_COLUMNS
    _warn(args, result.warnings)
    if args.out or args.format:  # the row batch mode would write for this pair
        row.update(score=result.score, llr=result.llr, accepted=result.accepted, threshold=result.threshold)
        write_rows([row], args.out, format_from_name(args.out, args.format), columns)
        if args.out:
            print(f"wrote 1 decision to {args.out}", file=sys.stderr)
        return EXIT_OK
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
                 "--target-far), with 95% confidence intervals: the threshold's by bootstrap; the EER's is "
                 "the bootstrap interval united with the exact (Clopper-Pearson) interval of the error "
                 "count, so on few pairs it is wider than the bootstrap-only interval of 'voxmetric eval'.",
                 "voxmetric calibrate sinctdnn-aam --trials my_pairs.txt --out cal.json")
    _add_model(p, calibration=False)
    p.add_argument("--trials", required=True, metavar="TRIALS", help="your labelled pairs")
    p.add_argument("--root", metavar="DIR", help="folder the trial paths are relative to (default: the list's)")
    p.add_argument("-o", "--out", default="calibration.json", metavar="CAL.json", help="calibration file to write")
    p.add_argument("--target-far", type=float, metavar="F",
                   help="threshold for this false-acceptance rate (default: the EER point)")
    p.add_argument("--bootstrap", type=int_at_least(1), default=DEFAULT_N_BOOTSTRAP, metavar="N",
                   help="bootstrap rounds")
    _add_skip_errors(p)
    _add_jobs(p)
    _add_quiet(p)
    p.set_defaults(func=_run_calibrate)

def _run_calibrate(args) -> int:
    from ..deploy.calibrate import calibrate_pairs

    if args.target_far is not None and not 0 < args.target_far < 1:
        raise UsageError(f"--target-far must be between 0 and 1 (exclusive), got {args.target_far:g}")
    _check_outputs(args.out)
    jobs = _jobs(args)
    result, failures = calibrate_pairs(_load(args), args.trials, audio_root=args.root, target_far=args.target_far,
                                       n_bootstrap=args.bootstrap, skip_errors=args.skip_errors,
                                       progress=not args.quiet, on_warning=_warner(args), jobs=jobs)
    for warning in result.warnings:  # about the fit itself (too few pairs): printed even with -q
        print(f"voxmetric: warning: {warning}", file=sys.stderr)
    result.save(args.out)
    (elow, ehigh), (tlow, thigh) = result.eer_ci, result.threshold_ci
    point = f"FAR {args.target_far:g}" if args.target_far else "the EER point"
    print(f"EER {result.eer * 100:.2f}% (95% CI {elow * 100:.2f}-{ehigh * 100:.2f}) on {result.n_target} target / "
          f"{result.n_nontarget} non-target pairs\nthreshold {result.threshold:.4f} at {point} "
          f"(95% CI {tlow:.4f}-{thigh:.4f}); LLR = {result.scale:.3f} * score "
          f"{'-' if result.offset < 0 else '+'} {abs(result.offset):.3f}\n"
          f"wrote {args.out}: use it with --calibration {args.out}")
    return _finish(failures, args.out)

def add_enroll(sub) -> None:
    p = _command(sub, "enroll", "enrol a speaker from recordings into a speaker database",
                 "Embed the recordings, average them in the normalised embedding space and store the speaker "
                 "in DB (an SQLite file, created if missing, tied to the model). A recording the speaker has "
                 "already (the same audio, under any name) is not added again.",
                 "voxmetric enroll sinctdnn-aam --name alice alice1.wav alice2.wav --db speakers.db")
    _add_model(p, calibration=False)
    p.add_argument("--name", required=True, help="the speaker's name")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="recordings of the speaker")
    p.add_argument("--db", required=True, metavar="DB", help="speaker database (created if missing)")
    p.add_argument("--replace", action="store_true", help="replace the speaker's recordings instead of adding")
    _add_skip_errors(p)
    _add_jobs(p)
    _add_quiet(p)
    p.set_defaults(func=_run_enroll)

def _run_enroll(args) -> int:
    from ..deploy.enroll import enroll_files

    _check_outputs(args.db)
    jobs = _jobs(args)
    result = enroll_files(_load(args), args.db, args.name, args.audio, replace=args.replace,
                          progress=not args.quiet, skip_errors=args.skip_errors, on_warning=_warner(args), jobs=jobs)
    repeated = (f" ({len(result.repeated)} of the given recording(s) enrolled already: not added again)"
                if result.repeated else "")
    print(f"enrolled '{result.speaker.name}' in {args.db}: {result.speaker.count} recording(s) in all{repeated}")
    return _finish(result.failures, args.db)

def add_identify(sub) -> None:
    p = _command(sub, "identify", "who is speaking? the closest enrolled speakers",
                 "Rank the speakers of a database by similarity to a recording; --list FILE does it for many "
                 "recordings with one model load (JSON Lines, or TSV one row per candidate; --out / --format "
                 "write one recording's candidates the same way).",
                 "voxmetric identify sinctdnn-aam unknown.wav --db speakers.db --top 3\n"
                 "  voxmetric identify sinctdnn-aam --db speakers.db --list calls.txt --out who.tsv")
    _add_model(p)
    p.add_argument("audio", nargs="?", metavar="AUDIO", help="the recording (or --list FILE)")
    p.add_argument("--db", required=True, metavar="DB", help="speaker database written by 'voxmetric enroll'")
    p.add_argument("--list", metavar="FILE", help="batch: one recording path per line")
    p.add_argument("--top", type=int_at_least(1), default=3, metavar="N", help="candidates to show")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object (one recording)")
    _add_batch_output(p)
    _add_skip_errors(p)
    _add_jobs(p)
    _add_quiet(p)
    p.set_defaults(func=_run_identify)

def _run_identify(args) -> int:
    from ..deploy.enroll import IDENTIFY_COLUMNS, identification_rows, identify, identify_list
    from ..fileio import dumps_json
    from ..inference.batch import format_from_name, read_list, write_rows

    if bool(args.audio) == bool(args.list):
        raise UsageError("give one recording or --list FILE")
    if args.audio:
        _check_one_result_output(args)
    _check_outputs(args.out)
    if args.list:
        paths = [row[0] for row in read_list(args.list)]
        jobs = _jobs(args)
        model = _load(args)
        batch = identify_list(model, args.db, paths, top=args.top, skip_errors=args.skip_errors,
                              progress=not args.quiet, on_warning=_warner(args), jobs=jobs)
        fmt = format_from_name(args.out, args.format)
        write_rows(identification_rows(batch.rows) if fmt == "tsv" else batch.rows, args.out, fmt, IDENTIFY_COLUMNS)
        if args.out:
            print(f"wrote {len(batch.rows)} identifications to {args.out}", file=sys.stderr)
        return _finish(batch.failures, args.out)
    result = identify(_load(args), args.db, args.audio, top=args.top)
    _warn(args, result.warnings)
    if args.out or args.format:  # the rows batch mode would write for this recording
        fmt = format_from_name(args.out, args.format)
        rows = [result.to_dict()]
        write_rows(identification_rows(rows) if fmt == "tsv" else rows, args.out, fmt, IDENTIFY_COLUMNS)
        if args.out:
            print(f"wrote 1 identification to {args.out}", file=sys.stderr)
        return EXIT_OK
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
    p.add_argument("model", metavar="MODEL", nargs="?", help=_MODEL_HELP)
    p.add_argument("--db", required=True, metavar="DB", help="speaker database")
    p.add_argument("--remove", metavar="NAME", help="remove this speaker")
    _add_quiet(p)
    # Only the model's fingerprint is used: no --device or --no-vad to choose.
    p.set_defaults(func=_run_speakers, device="cpu", no_vad=False)

def _run_speakers(args) -> int:
    from ..deploy.enroll import list_speakers, remove_speaker
    from ..deploy.speakerdb import normalise_name

    model = _load(args) if args.model else None
    if args.remove:
        remove_speaker(args.db, args.remove, model)
        print(f"removed '{normalise_name(args.remove)}' from {args.db}")
        return EXIT_OK
    model_id, speakers = list_speakers(args.db, model)
    print(f"{args.db}: {len(speakers)} speaker(s), embeddings of model {model_id}", file=sys.stderr)
    for speaker in speakers:
        print(f"{speaker.name}\t{speaker.count} recording(s)\tupdated {speaker.updated}")
    return EXIT_OK

def add_serve(sub) -> None:
    from ..deploy.serve.cli import add_serve as add

    add(sub, formatter_class=_Formatter, epilog_tail=EXIT_STATUS_HELP)
