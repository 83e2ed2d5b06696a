"""Weight averaging ('model soup') of ecapa-aam checkpoints from the same start; validation EER on mixed."""
import sys, tempfile, torch
from pathlib import Path
from voxmetric.evaluate.metrics import eer
from voxmetric.evaluate.pipeline import trial_scores
from voxmetric.inference.export import export_pretrained
from voxmetric.inference.speaker_model import load_model

E = Path("/work/exp")  # where the runs were (EXP); edit for yours
VAL = E / "bundled-data/val"
SETS = {
    "r9 real-only best": ["r9-ecapa-real/checkpoints/best.pt"],
    "shipped(r3best)": ["r3-ecapa/checkpoints/best.pt"],
    "r3 best+6+7": ["r3-ecapa/checkpoints/best.pt", "r3-ecapa/checkpoints/last.prev.pt", "r3-ecapa/checkpoints/last.pt"],
    "r3best+r4+r4b+r5": ["r3-ecapa/checkpoints/best.pt", "r4-ecapa/checkpoints/last.pt", "r4b-ecapa/checkpoints/last.pt", "r5-ecapa-3s/checkpoints/last.pt"],
    "r4+r4b+r5 lasts": ["r4-ecapa/checkpoints/last.pt", "r4b-ecapa/checkpoints/last.pt", "r5-ecapa-3s/checkpoints/last.pt"],
}
only = sys.argv[1:] or list(SETS)
tmp = Path(tempfile.mkdtemp())
for name in only:
    paths = [E / p for p in SETS[name]]
    cks = [torch.load(p, weights_only=True, map_location="cpu") for p in paths]
    base = cks[0]
    avg = {}
    for k, v in base["model"].items():
        if v.is_floating_point():
            avg[k] = sum(c["model"][k] for c in cks) / len(cks)
        else:
            avg[k] = v
    base["model"] = avg
    ck = tmp / "soup.pt"
    torch.save(base, ck)
    for settings in ({"window_s": 3.0, "step_s": 1.5, "rms_dbfs": -26.0}, {"window_s": None, "step_s": 0.1, "rms_dbfs": -26.0}):
        w = tmp / "soup.safetensors"
        export_pretrained(ck, w, calibration=None, threshold=None, embedding_settings=settings, description="", training_info={}, dtype="float32")
        s, y = trial_scores(load_model(w), VAL / "mixed.txt", VAL / "wav", progress=False)
        print(f"{name:24s} window {settings['window_s']}: EER {eer(s, y) if not isinstance(eer(s,y), tuple) else eer(s,y)[0]}", flush=True)
