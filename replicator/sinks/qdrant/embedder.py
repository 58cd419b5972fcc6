"""Computes the vectors a plan needs with the packaged all-MiniLM-L6-v2, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from replicator.embedding import load_model, model_version
from replicator.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: Texts per ``model.encode`` call: on 2 shared cores 16-64 is where throughput levels off.
DEFAULT_ENCODE_BATCH = 32


class Embedder:
    """Wraps the model. Not thread-safe (one sink thread). ``computed`` counts texts encoded."""

    def __init__(
        self,
        model: SentenceTransformer | None = None,
        batch_size: int = DEFAULT_ENCODE_BATCH,
        version: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"embedding batch size {batch_size} is below 1", hint="use 16-64 on a small CPU")
        self._model = model
        self.batch_size = batch_size
        self.version = version or model_version()  # the label of computed vectors
        self.computed = 0
        #: The last attempt to load the model failed: the sink's re-check must try it again.
        self.failed = False

    @property
    def model(self) -> SentenceTransformer:
        """The model, loaded on first use (a few seconds, and torch's import: a sink whose changes all
        come with the store's vectors never pays it). Raises ModelError (fatal for the sink: a model
        that does not load is never a reason to set an event aside); a later call tries again."""
        if self._model is None:
            try:
                self._model = load_model()
            except ModelError:
                self.failed = True
                raise
            self.failed = False
        return self._model

    def load(self) -> None:
        """Load the model now. Raises ModelError."""
        _ = self.model

    def embed(self, texts: Sequence[str]) -> dict[str, list[float]]:
        """text -> L2-normalised 384-d vector, encoding ``batch_size`` texts per call. Blocks (CPU)."""
        out: dict[str, list[float]] = {}
        unique = list(dict.fromkeys(texts))
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start : start + self.batch_size]
            vectors = self.model.encode(
                chunk, batch_size=len(chunk), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            for text, vector in zip(chunk, vectors, strict=True):
                out[text] = vector.tolist()  # float32 -> Python floats, exact
        self.computed += len(unique)
        return out
