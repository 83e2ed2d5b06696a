"""Every number from the same front-end: for one checkpoint, compare's EER equals the EER of
embed + score + eval and of calibrate, to the last digit."""

import json

import pytest
import yaml

from voxmetric.cli import main
from voxmetric.data.synth import synthesize
from voxmetric.data.trials import read_trials, trial_keys
from voxmetric.inference.checkpoint import load_checkpoint

from .training.test_trainer import TINY_MODEL


@pytest.mark.slow
def test_compare_embed_score_eval_and_calibrate_agree_exactly(tmp_path):
    corpus = tmp_path / "corpus"
    synthesize(corpus, speakers=12, utterances=3, seed=3, workers=1, progress=False)
    trials = corpus / "test_trials.txt"
    config = {
        "seed": 1,
        "data": {"corpus": str(corpus), "format": "voxceleb", "split": "train", "chunk_duration_s": 1.0,
                 "speakers_per_batch": 4, "chunks_per_speaker": 2, "min_speaker_duration_s": 1.0,
                 "num_workers": 0},
        "model": TINY_MODEL,
        "optimizer": {"name": "adam", "lr": 0.005},
        "training": {"epochs": 1, "batches_per_epoch": 3, "log_every_batches": 1},
        "frontend": {"vad": True, "window_s": 1.5, "step_s": 0.5},
        "validation": {"trials": str(corpus / "val_trials.txt"), "root": str(corpus / "wav")},
        "evaluation": {"trials": str(trials), "root": str(corpus / "wav"), "n_bootstrap": 10,
                       "snorm_top_n": 3, "cohort_utterances_per_speaker": 1},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "compare"
    assert main(["compare", str(path), "--losses", "aam", "--budget", "3", "--out", str(out), "-q"]) == 0
    row = json.loads((out / "results.json").read_text())["results"][0]
    run = row["runs"][0]
    checkpoint = out / "aam" / f"seed{run['seed']}" / "checkpoints" / f"{run['tested_checkpoint']}.pt"
    # the window validation chose at the end of training (VAD and level: the config's), stored in the checkpoint
    assert run["frontend"] == load_checkpoint(checkpoint)["frontend"]
    assert (run["frontend"]["vad"], run["frontend"]["rms_dbfs"]) == (True, None)

    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(trial_keys(read_trials(trials))) + "\n")
    embeddings, scores, metrics = tmp_path / "emb.npz", tmp_path / "scores.txt", tmp_path / "metrics.json"
    assert main(["embed", str(checkpoint), "--list", str(keys), "--root", str(corpus / "wav"),
                 "--out", str(embeddings), "-q"]) == 0
    assert main(["score", "--trials", str(trials), "--embeddings", str(embeddings), "--out", str(scores)]) == 0
    assert main(["eval", "--trials", str(trials), "--scores", str(scores), "--out", str(metrics),
                 "--bootstrap", "10", "-q"]) == 0
    calibration = tmp_path / "cal.json"
    assert main(["calibrate", str(checkpoint), "--trials", str(trials), "--root", str(corpus / "wav"),
                 "--out", str(calibration), "--bootstrap", "10", "-q"]) == 0

    compare_eer = row["cosine"]["eer"][0]
    assert json.loads(metrics.read_text())["eer"] == compare_eer
    assert json.loads(calibration.read_text())["eer"] == compare_eer
