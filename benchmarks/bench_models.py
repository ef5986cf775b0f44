"""Model throughput on this machine, printed as JSON: training samples/s for ``metascan-small``
and ``moclip`` (a few optimizer steps on random binary cells) and retrieval time for a 10k
gallery. Run: ``.venv/bin/python benchmarks/bench_models.py [--steps N] [--batch B]``."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from models.config import get_config
from models.loss import ClipLoss
from models.model import ContrastiveModel
from models.retrieval import cosine_scores, ranks_of_truth
from models.train import train_step


def train_rate(name: str, steps: int, batch: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = ContrastiveModel(get_config(name)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    image = (torch.rand(batch, 128, 128, device=device) > 0.5).to(torch.uint8)
    params = 0.2 + 0.4 * torch.rand(batch, 2, device=device)
    spectra = torch.rand(batch, 2, 29, device=device)
    loss = ClipLoss()
    train_step(model, loss, opt, image, params, spectra, device)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, loss, opt, image, params, spectra, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def retrieval_seconds(n: int = 10_000, dim: int = 64) -> float:
    feats = torch.nn.functional.normalize(torch.randn(2, n, dim), dim=-1)
    ids = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    ranks_of_truth(cosine_scores(feats[0], feats[1]), ids, ids)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "train_samples_per_s": {
            name: round(train_rate(name, args.steps, args.batch, device), 1)
            for name in ("metascan-small", "moclip")
        },
        "retrieval_10k_gallery_s": round(retrieval_seconds(), 3),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
