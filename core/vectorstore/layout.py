"""Collection parameters: the settings as each engine takes them, and what an existing collection
was created with, so a changed setting is reported (`ragkb check`) instead of silently ignored.

Parameters are applied when a collection is created. Qdrant can change some of them in place on
a server (HNSW, quantization, on-disk, replication), but a changed HNSW graph or quantization
only reaches segments as they are rebuilt; ragkb's way to apply them everywhere is
`ragkb reindex` (a new collection), so a difference is reported, never changed behind the
operator's back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.settings import CollectionSettings, Quantization

# Comparable parameters, each a scalar, as a flat mapping; both engines report them this way.
Layout = dict[str, object]
# Parameters only a Qdrant server has (qdrant-edge is one local shard).
SERVER_ONLY = ("shards", "replication_factor", "write_consistency_factor", "tiered_multitenancy")
EDGE_CONFIG_FILE = "edge_config.json"
# Qdrant's default full-scan threshold (KB of vectors): below it a filtered search scans the
# tenant's points instead of walking a graph. qdrant-edge's constructor requires it.
FULL_SCAN_THRESHOLD_KB = 10_000


def desired_layout(settings: CollectionSettings, *, server: bool) -> Layout:
    """The parameters the settings ask for (the server-only ones only for a server)."""
    quantized = settings.quantization is Quantization.INT8
    layout: Layout = {
        "vectors_on_disk": settings.vectors_on_disk,
        "payload_on_disk": settings.payload_on_disk,
        "hnsw_m": settings.hnsw_m,
        "hnsw_payload_m": settings.hnsw_payload_m,
        "hnsw_ef_construct": settings.hnsw_ef_construct,
        "quantization": settings.quantization.value,
        "quantization_quantile": settings.quantization_quantile if quantized else None,
        "quantization_always_ram": settings.quantization_always_ram if quantized else None,
    }
    if server:
        layout.update(
            shards=settings.shards,
            replication_factor=settings.replication_factor,
            write_consistency_factor=settings.write_consistency_factor,
            tiered_multitenancy=settings.tiered_multitenancy,
        )
    return layout


def drift(desired: Layout, found: Layout) -> list[str]:
    """One line per parameter that differs, `name: collection X, settings Y`; empty if none."""
    return [
        f"{name}: collection {found.get(name)!r}, settings {value!r}"
        for name, value in desired.items()
        if found.get(name) != value
    ]


def edge_layout(path: Path) -> Layout | None:
    """What an embedded store was created with, read from the config qdrant-edge keeps beside
    its segments (no shard is opened: a running `ragkb serve` holds its lock). None if the store
    does not exist yet. Unset fields are Qdrant's defaults (m 16, ef_construct 100, payload_m
    unset, no quantization, vectors in RAM, payload on disk)."""
    file = path / EDGE_CONFIG_FILE
    if not file.exists():
        return None
    config: dict[str, Any] = json.loads(file.read_text())
    vectors = config.get("vectors") or {}
    dense: dict[str, Any] = next(iter(vectors.values()), {}) if vectors else {}
    hnsw = config.get("hnsw_config") or {}
    scalar = (config.get("quantization_config") or {}).get("scalar")
    return {
        "vectors_on_disk": bool(dense.get("on_disk") or False),
        "payload_on_disk": config.get("on_disk_payload", True) is not False,
        "hnsw_m": hnsw.get("m", 16),
        "hnsw_payload_m": hnsw.get("payload_m"),
        "hnsw_ef_construct": hnsw.get("ef_construct", 100),
        "quantization": scalar["type"] if scalar else Quantization.NONE.value,
        "quantization_quantile": scalar.get("quantile") if scalar else None,
        "quantization_always_ram": scalar.get("always_ram") if scalar else None,
    }


def edge_dimension(path: Path, vector: str) -> int | None:
    """The stored dimension of one dense vector of an embedded store (None: no store yet)."""
    file = path / EDGE_CONFIG_FILE
    if not file.exists():
        return None
    vectors = json.loads(file.read_text()).get("vectors") or {}
    size = (vectors.get(vector) or {}).get("size")
    return int(size) if size is not None else None
