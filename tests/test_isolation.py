"""Property: no interleaving of ingest, re-ingest, delete and search across tenants and end users
ever shows a tenant another tenant's text, ids or counts, or an end user a document their
principals may not read (checked from outside, through the HTTP API on the real stack)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from api.app import create_app
from api.eval_end_users import EndUsers
from api.eval_isolation import PRINCIPALS, World
from api.eval_statistics import probe_statistics
from api.runtime import Runtime
from core.db import run_migrations
from core.embedding import LocalEmbedder
from core.settings import Settings
from core.tenancy import create_tenant, issue_api_key
from tests.apihelpers import echo_runtime

TENANTS = ("acme", "globex", "initech")
tenants = st.sampled_from(TENANTS)
PATHS = ("a.md", "docs/b.md", "docs/c.md")
principal_sets = st.one_of(
    st.none(), st.lists(st.sampled_from(PRINCIPALS), min_size=1, max_size=2, unique=True)
)


@pytest.fixture
def stack(
    settings: Settings, embedder: LocalEmbedder
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings.limits.queries_per_minute = 1_000_000
    settings.limits.query_burst = 100_000
    settings.limits.ingest_per_minute = 1_000_000
    settings.limits.ingest_burst = 100_000
    run_migrations(settings)
    runtime = Runtime.build(settings, embedder=embedder)
    keys = {}
    with runtime.session_factory() as session:
        for name in TENANTS:
            keys[name] = issue_api_key(session, tenant=create_tenant(session, name=name)).plaintext
        session.commit()
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield client, keys
    finally:
        runtime.close()


def test_no_interleaving_leaks_across_tenants_or_principals(
    stack: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = stack
    world = World(client, keys)
    random.seed(0)

    class Interleavings(RuleBasedStateMachine):
        @initialize()
        def reset(self) -> None:
            # One stack for every example (building it costs seconds): start from empty tenants.
            for tenant, path in list(world.documents):
                world.delete(tenant, path)

        @rule(
            tenant=st.sampled_from(TENANTS), path=st.sampled_from(PATHS), principals=principal_sets
        )
        def ingest(self, tenant: str, path: str, principals: list[str] | None) -> None:
            world.ingest(tenant, path, principals)

        @rule(tenant=tenants, path=st.sampled_from(PATHS))
        def delete(self, tenant: str, path: str) -> None:
            world.delete(tenant, path)

        @rule(tenant=tenants, victim=tenants)
        def foreign_delete(self, tenant: str, victim: str) -> None:
            world.try_foreign_delete(tenant, victim)

        @rule(
            tenant=st.sampled_from(TENANTS),
            principals=principal_sets,
            marker_of=st.sampled_from(TENANTS),
        )
        def search(self, tenant: str, principals: list[str] | None, marker_of: str) -> None:
            # Ask for another tenant's exact marker word too: lexical search must not find it.
            theirs = [d.marker for d in world.documents.values() if d.tenant == marker_of]
            world.search(tenant, principals, query=theirs[0] if theirs else None)

        @invariant()
        def listings_searches_and_no_leaks(self) -> None:
            # After every step each tenant lists and searches (as no end user and as one), so
            # every interleaving is checked whatever rules hypothesis drew.
            for n, tenant in enumerate(TENANTS):
                world.check_listing(tenant)
                world.search(tenant, None)
                world.search(tenant, [PRINCIPALS[(n + world.queries) % len(PRINCIPALS)]])
            assert world.leaks == []

    run_state_machine_as_test(
        Interleavings,
        settings=settings(
            max_examples=6, stateful_step_count=12, deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )  # fmt: skip
    assert world.queries > 0


@pytest.fixture
def uncached_idf(settings: Settings) -> None:
    """Every search reads its IDF from the store: a remembered value would hide a leaking one.
    (Requested before `stack`, so the stack is built with it.)"""
    settings.retrieval.idf_cache_ttl_s = 0


def test_a_tenants_scores_do_not_move_when_another_tenants_corpus_changes(
    uncached_idf: None, stack: tuple[TestClient, dict[str, str]]
) -> None:
    client, keys = stack
    result = probe_statistics(client, keys, observer="acme", writer="globex", rng=random.Random(0))
    # Lexical and hybrid, as the tenant and as an end user, after the upload and the delete.
    assert result.comparisons == 8
    assert result.shifts == []


# End users (issue 15): questions, follow-ups and chat completions answered by the echo reader,
# which repeats its whole prompt, so what reached the rewrite and the reader shows in every
# response and stored turn (api/eval_end_users.py).


@pytest.fixture
def echo_stack(
    settings: Settings, embedder: LocalEmbedder
) -> Iterator[tuple[TestClient, dict[str, str], Runtime]]:
    settings.limits.queries_per_minute = 1_000_000
    settings.limits.query_burst = 100_000
    settings.limits.ingest_per_minute = 1_000_000
    settings.limits.ingest_burst = 100_000
    with echo_runtime(settings, embedder) as runtime:
        keys = {}
        with runtime.session_factory() as session:
            for name in TENANTS:
                tenant = create_tenant(session, name=name)
                keys[name] = issue_api_key(session, tenant=tenant).plaintext
            session.commit()
        with TestClient(create_app(settings, runtime)) as client:
            yield client, keys, runtime


def test_no_interleaving_leaks_to_end_users(
    echo_stack: tuple[TestClient, dict[str, str], Runtime],
) -> None:
    """No response, rewrite prompt or stored turn holds text its end user may not read now,
    whatever the order of uploads, access-list changes, deletes, questions, follow-ups (by the
    same or another end user) and chat completions."""
    client, keys, runtime = echo_stack
    world = World(client, keys)
    end_users = EndUsers(world, runtime.session_factory)
    rng = random.Random(0)

    class EndUserInterleavings(RuleBasedStateMachine):
        @initialize(access=st.lists(principal_sets, min_size=len(TENANTS), max_size=len(TENANTS)))
        def reset(self, access: list[list[str] | None]) -> None:
            # Deleting the last example's documents must redact the answers that drew on them
            # (the stored turns stay and are checked); every tenant starts with one document.
            for tenant, path in list(world.documents):
                world.delete(tenant, path)
            end_users.conversations.clear()
            for tenant, principals in zip(TENANTS, access, strict=True):
                world.ingest(tenant, PATHS[0], principals)

        @rule(tenant=tenants, path=st.sampled_from(PATHS), principals=principal_sets)
        def ingest(self, tenant: str, path: str, principals: list[str] | None) -> None:
            world.ingest(tenant, path, principals)

        @rule(tenant=tenants, path=st.sampled_from(PATHS))
        def delete(self, tenant: str, path: str) -> None:
            world.delete(tenant, path)

        @rule(
            tenant=tenants,
            principals=principal_sets,
            follow_up=st.booleans(),
            as_owner=st.booleans(),
            stream=st.booleans(),
            rng=st.randoms(use_true_random=False),
        )
        def ask(
            self,
            tenant: str,
            principals: list[str] | None,
            follow_up: bool,
            as_owner: bool,
            stream: bool,
            rng: random.Random,
        ) -> None:
            end_users.ask(
                tenant, principals, rng, follow_up=follow_up, as_owner=as_owner, stream=stream
            )

        @rule(tenant=tenants, principals=principal_sets, rng=st.randoms(use_true_random=False))
        def chat(self, tenant: str, principals: list[str] | None, rng: random.Random) -> None:
            end_users.chat(tenant, principals, rng)

        @rule(
            tenant=tenants,
            principals=st.one_of(principal_sets, st.just([])),
            rng=st.randoms(use_true_random=False),
        )
        def read(self, tenant: str, principals: list[str] | None, rng: random.Random) -> None:
            end_users.read(tenant, principals, rng)

        @invariant()
        def no_leaks(self) -> None:
            # After every step each tenant's end users ask too (in one tenant the end user who
            # started a conversation continues it, in another whoever asks tries to), so every
            # interleaving is checked whatever rules hypothesis drew.
            for n, tenant in enumerate(TENANTS):
                who = [PRINCIPALS[(n + end_users.questions) % len(PRINCIPALS)]]
                end_users.ask(tenant, who, rng, follow_up=n < 2, as_owner=n == 0)
                end_users.read(tenant, [] if n == 1 else who, rng)
            end_users.check_stored_turns()
            assert world.leaks == []

    run_state_machine_as_test(
        EndUserInterleavings,
        settings=settings(
            max_examples=3, stateful_step_count=8, deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )  # fmt: skip
    assert end_users.follow_ups > 0
    assert end_users.refused_continuations > 0
    assert end_users.turns_checked > 0
    assert end_users.document_reads > 0
    assert end_users.echoed_markers > 0  # the echo reached the check: it can see a leak
