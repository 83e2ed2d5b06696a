"""SincTDNN learns to separate 4 speakers of the built-in corpus in a few dozen steps, with AAM
and with the seed code's center, contrastive and triplet losses."""

import numpy as np
import pytest
import torch

from voxmetric.data.readers import read_voxceleb
from voxmetric.data.sampler import ChunkBatches
from voxmetric.data.synth.corpus import synthesize
from voxmetric.losses import build_loss
from voxmetric.models import build_model


def nearest_neighbour_accuracy(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of embeddings whose most cosine-similar other embedding has the same label."""
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)
    return (labels[similarity.argmax(dim=1)] == labels).float().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("loss_name", ["aam", "center", "contrastive", "triplet"])
def test_sinctdnn_overfits_four_speakers(tmp_path, loss_name):
    synthesize(tmp_path / "corpus", speakers=4, utterances=3, seed=5, workers=1, progress=False)
    corpus = read_voxceleb(tmp_path / "corpus", progress=False)
    batches = ChunkBatches(corpus, speakers_per_batch=4, chunks_per_speaker=4, chunk_duration_s=1.0, seed=0)
    torch.manual_seed(0)
    model = build_model("sinctdnn", sinc_filters=40, conv_channels=32, tdnn_channels=64, tdnn_stats_channels=128,
                        embedding_dim=32)
    loss_fn = build_loss(loss_name, embedding_dim=32, num_speakers=4)
    optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=0.003)
    fixed_x, fixed_y = batches.batch(0)  # the batch whose fit we check
    losses = []
    for step in range(60):
        x, y = (fixed_x, fixed_y) if step % 2 == 0 else batches.batch(step)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.inference_mode():
        embeddings = model(fixed_x)
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    # chance is about 0.2 (3 of the 15 others share the label); exactly 1.0 depends on the CPU's float rounding
    assert nearest_neighbour_accuracy(embeddings, fixed_y) >= 0.75
    if loss_name == "aam":  # its classifier head too: chance is 0.25 (center's head sits at 0.75, too close to call)
        assert loss_fn.accuracy(embeddings, fixed_y) >= 0.75
