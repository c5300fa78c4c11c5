"""SemanticDataset.batches: epochs without replacement, datasets smaller than a batch, checkpointing."""

import torch

from nbsyn.data import make_dataset
from nbsyn.train import fit


def _ids(dataset):
    """Each sample's identity: its label map's first pixels (distinct for these renders)."""
    return [tuple(x.flatten()[:8].tolist()) for x in dataset.images]


def test_an_epoch_visits_every_sample_once():
    data = make_dataset("scenes", 12, 16, seed=0)
    ids = _ids(data)
    batches = data.batches(4, torch.Generator().manual_seed(0))
    seen = [tuple(x.flatten()[:8].tolist()) for _ in range(3) for x in next(batches)[0]]
    assert sorted(seen) == sorted(ids)


def test_fewer_items_than_the_batch_still_gives_full_batches():
    data = make_dataset("faces", 3, 16, seed=0)  # 1-shot / 5-shot training, recalibrate_ema on a few maps
    batches = data.batches(8, torch.Generator().manual_seed(0))
    for _ in range(5):
        images, labels = next(batches)
        assert images.shape[0] == 8 and labels.shape[0] == 8
    counts = torch.zeros(3)
    for x in next(batches)[0]:
        counts[_ids(data).index(tuple(x.flatten()[:8].tolist()))] += 1
    assert counts.min() >= 2  # each of the 3 items appears ceil(8 / 3) - 1 = 2 or 3 times


def test_resumed_stream_gives_the_same_batches(tmp_path):
    data = make_dataset("scenes", 10, 16, seed=0)
    straight = data.batches(4, torch.Generator().manual_seed(1))
    expected = [next(straight)[1] for _ in range(6)]

    got = []
    stream = data.batches(4, torch.Generator().manual_seed(1))
    step = lambda i: got.append(next(stream)[1]) or {"loss": 0.0}  # noqa: E731
    fit(step, 3, {"batches": stream}, ckpt_path=tmp_path / "c.pt", progress=False)
    stream = data.batches(4, torch.Generator().manual_seed(999))  # a fresh stream, wrong seed: the checkpoint wins
    fit(step, 6, {"batches": stream}, ckpt_path=tmp_path / "c.pt", progress=False)
    assert len(got) == 6 and all(torch.equal(a, b) for a, b in zip(got, expected))
