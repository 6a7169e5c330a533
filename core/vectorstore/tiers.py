"""Tiered multitenancy (Qdrant >= 1.16, server only): small tenants share one shard key, a large
tenant gets a shard key of its own, and Qdrant routes each request.

Every read and write of a tiered collection names `ShardKeyWithFallback(target=<the tenant's
key>, fallback=<the shared key>)`: Qdrant sends it to the tenant's own shard key once that
exists and is active, to the shared one before. The tenant's key is derived from its id, so the
record of a promotion is the shard key itself, kept by Qdrant: every API and worker process
routes the same way from the moment Qdrant activates it, with no routing table of ours to go
stale between processes.

Promotion follows Qdrant's recipe: create the tenant's key in state Partial, replicate the
tenant's points into it from the shared key (`replicate_points`; writes during the copy reach
both), wait for Qdrant to mark it Active, then delete the tenant's points from the shared key.
Only a Qdrant server has shard keys: qdrant-edge is one local shard and qdrant-client's local
mode ignores sharding, so `promote` refuses both (`TieringUnsupported`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from qdrant_client import QdrantClient, models

from core.vectorstore import TENANT_FIELD

# The shard key of every tenant not promoted.
FALLBACK_SHARD_KEY = "shared"
_TENANT_PREFIX = "tenant-"


class TieringUnsupported(RuntimeError):
    """The store cannot hold a tenant on a shard key of its own (no Qdrant server, or a
    collection created without custom sharding)."""


def tenant_shard_key(tenant_id: str) -> str:
    """The shard key a tenant moves to when promoted (its id, prefixed: never the shared key)."""
    if not tenant_id:
        raise ValueError("a tenant id is required")
    return _TENANT_PREFIX + tenant_id


def shard_key_of(tenant_id: str) -> models.ShardKeyWithFallback:
    """The selector of every request for `tenant_id` in a tiered collection: its own key once
    promoted and active, the shared key until then (Qdrant decides per request)."""
    return models.ShardKeyWithFallback(
        target=tenant_shard_key(tenant_id), fallback=FALLBACK_SHARD_KEY
    )


@dataclass(frozen=True)
class Promotion:
    tenant_id: str
    shard_key: str
    points_moved: int
    seconds: float


def refuse_unless_server(*, url: str | None, tiered: bool) -> None:
    """Raise TieringUnsupported, saying what to change, unless the store is a Qdrant server
    whose collections are created with tiered multitenancy."""
    if not url:
        raise TieringUnsupported(
            "moving a tenant to its own shard key needs a Qdrant server (>= 1.16): the "
            "embedded store (qdrant-edge) is a single shard and qdrant-client local mode has no "
            "shards; set RAGKB_VECTOR_STORE__KIND=qdrant and RAGKB_VECTOR_STORE__URL"
        )
    if not tiered:
        raise TieringUnsupported(
            "the collection is not custom-sharded: set "
            "RAGKB_VECTOR_STORE__COLLECTION__TIERED_MULTITENANCY=true and `ragkb reindex` "
            "to a collection created with it (sharding is fixed at creation)"
        )


def promote_tenant(
    client: QdrantClient,
    collection: str,
    tenant_id: str,
    *,
    shards: int = 1,
    replication_factor: int | None = None,
    timeout_s: float = 3600.0,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> Promotion:
    """Move one tenant's points from the shared shard key to its own (see the module).

    Raises TieringUnsupported for a collection without custom sharding, ValueError if the tenant
    is already promoted, TimeoutError if Qdrant has not activated the new key in `timeout_s`
    (the tenant's points are then still in the shared key; rerunning is safe once the transfer
    ends, or drop the key with `delete_shard_key` to start over).
    """
    started = clock()
    info = client.get_collection(collection)
    if info.config.params.sharding_method is not models.ShardingMethod.CUSTOM:
        refuse_unless_server(url="server", tiered=False)
    key = tenant_shard_key(tenant_id)
    existing = {k.key for k in (client.list_shard_keys(collection).shard_keys or [])}
    if key in existing:
        raise ValueError(f"tenant {tenant_id} already has its own shard key {key!r}")
    tenant_filter = models.Filter(
        must=[models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant_id))]
    )
    moved = client.count(
        collection, count_filter=tenant_filter, exact=True, shard_key_selector=FALLBACK_SHARD_KEY
    ).count
    # Partial: the new key takes writes but no reads until the copy is done.
    client.cluster_collection_update(
        collection,
        models.CreateShardingKeyOperation(
            create_sharding_key=models.CreateShardingKey(
                shard_key=key,
                shards_number=shards,
                replication_factor=replication_factor,
                initial_state=models.ReplicaState.PARTIAL,
            )
        ),
    )
    client.cluster_collection_update(
        collection,
        models.ReplicatePointsOperation(
            replicate_points=models.ReplicatePoints(
                filter=tenant_filter, from_shard_key=FALLBACK_SHARD_KEY, to_shard_key=key
            )
        ),
    )
    while not key_is_active(client.collection_cluster_info(collection), key):
        if clock() - started > timeout_s:
            raise TimeoutError(f"shard key {key!r} not active after {timeout_s:.0f} s")
        time.sleep(poll_s)
    # Reads now go to the tenant's key; its copies in the shared key are dead weight.
    client.delete(
        collection,
        points_selector=models.FilterSelector(filter=tenant_filter),
        shard_key_selector=FALLBACK_SHARD_KEY,
        wait=True,
    )
    return Promotion(tenant_id, key, moved, clock() - started)


def key_is_active(cluster: models.CollectionClusterInfo, key: str) -> bool:
    """Whether every replica of every shard of `key` is Active (and at least one exists)."""
    replicas = [(s.shard_id, s.state) for s in cluster.local_shards if s.shard_key == key]
    replicas += [(s.shard_id, s.state) for s in cluster.remote_shards if s.shard_key == key]
    states = [state for _, state in replicas]
    ids = {shard_id for shard_id, _ in replicas}
    transferring = any(t.shard_id in ids for t in cluster.shard_transfers or [])
    return (
        bool(states) and not transferring and all(s is models.ReplicaState.ACTIVE for s in states)
    )
