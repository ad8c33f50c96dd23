"""The naive baseline: one image at a time, fp32 eager forward at batch 1, one SQLite commit per image.

Run as a whole process (imports included) by the benchmark:
    python -m tests.benchmarks.naive_ingest --images_folder DIR --ref_image NAME --db FILE
It prints the top ranks, like the CLI, so both runs do the same work: ingest every image, then rank.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from index.config import Settings
from index.model.registry import REGISTRY

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images_folder", required=True)
    p.add_argument("--ref_image", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--limit", type=int, default=0)
    args = p.parse_args()

    spec = REGISTRY["efficientnet_lite0"]
    model = timm.create_model(spec.timm_name, pretrained=False)
    state = torch.load(spec.weights_file(Settings()), map_location="cpu", weights_only=True)
    model.load_state_dict(spec.convert(state, model))
    model.eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)

    db = sqlite3.connect(args.db)
    db.execute("CREATE TABLE IF NOT EXISTS images (name TEXT PRIMARY KEY, embedding BLOB, top1 INTEGER)")
    files = sorted(f for f in Path(args.images_folder).iterdir() if f.suffix.lower() in SUFFIXES)
    if args.limit:
        files = files[: args.limit]
    for f in files:
        img = Image.open(f).convert("RGB")
        x = transform(img).unsqueeze(0)
        with torch.no_grad():
            feats = model.forward_head(model.forward_features(x), pre_logits=True)  # type: ignore[operator]
            logits = model.get_classifier()(feats)  # type: ignore[operator]
        vec = torch.nn.functional.normalize(feats, dim=1)[0].numpy().astype(np.float32)
        db.execute(
            "INSERT OR REPLACE INTO images VALUES (?, ?, ?)", (f.name, vec.tobytes(), int(logits.argmax(dim=1)[0]))
        )
        db.commit()

    rows = db.execute("SELECT name, embedding FROM images").fetchall()
    names = [r[0] for r in rows]
    matrix = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
    ref = matrix[names.index(args.ref_image)]
    scores = matrix @ ref
    for rank, i in enumerate(np.argsort(-scores)[1:6], start=1):
        print(f"{rank}  {names[i]}  {scores[i]:.4f}")
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
