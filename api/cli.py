"""The `ragkb` command: serve, worker, tenants and keys, ingest a folder, ask."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.schemas import JobOut
from client import APIConnectionError, APIError, RagkbClient
from client.calls import batched, folder_files
from core.settings import Settings, get_settings

app = typer.Typer(help="ragkb: a self-hosted RAG knowledge base.", no_args_is_help=True)
tenant_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
reader_app = typer.Typer(help="The embedded CPU reader.", no_args_is_help=True)
eval_app = typer.Typer(
    help="Evaluate quality through the real service paths.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
app.add_typer(reader_app, name="reader")

console = Console()
err_console = Console(stderr=True)

DEMO_TENANT = "demo"
ApiUrl = Annotated[str, typer.Option(envvar="RAGKB_URL", help="The ragkb API root.")]
ApiKeyOpt = Annotated[str, typer.Option(envvar="RAGKB_API_KEY", help="An API key.")]


def _session(settings: Settings) -> Any:
    from core.db import create_db_engine, create_session_factory, run_migrations

    run_migrations(settings)
    return create_session_factory(create_db_engine(settings))()


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision."""
    from core.db import run_migrations

    run_migrations(get_settings())
    console.print("database is at the newest revision")


@tenant_app.command("create")
def tenant_create(name: str) -> None:
    """Create a tenant."""
    from core.tenancy import TenantExistsError, create_tenant

    with _session(get_settings()) as session:
        try:
            tenant = create_tenant(session, name=name)
        except (TenantExistsError, ValueError) as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        session.commit()
        console.print(f"tenant {tenant.name} created (id {tenant.id})")


@tenant_app.command("limits")
def tenant_limits(
    name: str,
    queries_per_minute: Annotated[float | None, typer.Option(help="Query rate limit.")] = None,
    ingest_per_minute: Annotated[float | None, typer.Option(help="Upload rate limit.")] = None,
    max_documents: Annotated[int | None, typer.Option(help="Document quota.")] = None,
    max_stored_bytes: Annotated[int | None, typer.Option(help="Storage quota in bytes.")] = None,
    query_burst: Annotated[
        int | None,
        typer.Option(min=1, help="Queries at once (default: a minute of the rate, at most 30)."),
    ] = None,
    ingest_burst: Annotated[
        int | None,
        typer.Option(min=1, help="Uploads at once (default: a minute of the rate, at most 20)."),
    ] = None,
) -> None:
    """Set a tenant's own limits; an option left out resets that limit to the default."""
    from core.audit import AuditAction, record
    from core.tenancy import LimitOverrides, TenantNotFoundError, get_tenant_by_name
    from core.tenancy import set_tenant_limits as store_limits

    limits = LimitOverrides(
        queries_per_minute, ingest_per_minute, max_documents, max_stored_bytes,
        query_burst=query_burst, ingest_burst=ingest_burst,
    )  # fmt: skip
    with _session(get_settings()) as session:
        try:
            tenant_row = get_tenant_by_name(session, name=name)
        except TenantNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        store_limits(session, tenant=tenant_row, limits=limits)
        record(session, tenant_id=tenant_row.id, action=AuditAction.TENANT_LIMITS,
               principal="cli", details=vars(limits))  # fmt: skip
        session.commit()
    console.print(f"limits of {name}: {vars(limits)} (None: the default)")


@tenant_app.command("settings")
def tenant_settings(
    name: str,
    require_principals: Annotated[
        bool,
        typer.Option(
            "--require-principals/--no-require-principals",
            help="Default for the tenant's keys without their own setting: queries must name "
            "the end user (`principals`), else 400.",
        ),
    ],
) -> None:
    """Set a tenant's own settings."""
    from core.audit import AuditAction, record
    from core.tenancy import TenantNotFoundError, get_tenant_by_name, set_tenant_require_principals

    with _session(get_settings()) as session:
        try:
            tenant_row = get_tenant_by_name(session, name=name)
        except TenantNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        set_tenant_require_principals(session, tenant=tenant_row, required=require_principals)
        record(session, tenant_id=tenant_row.id, action=AuditAction.TENANT_SETTINGS,
               principal="cli", details={"require_principals": require_principals})  # fmt: skip
        session.commit()
    console.print(f"{name}: end-user principals {'required' if require_principals else 'optional'}")


@tenant_app.command("promote")
def tenant_promote(
    name: str,
    shards: Annotated[int, typer.Option(min=1, help="Shards of the tenant's shard key.")] = 1,
    replication_factor: Annotated[
        int | None, typer.Option(min=1, help="Replicas per shard (default: the collection's).")
    ] = None,
    timeout_s: Annotated[
        float, typer.Option(help="How long to wait for Qdrant to finish the copy.")
    ] = 3600.0,
) -> None:
    """Move a large tenant from the shared shard key to a shard key of its own, in the active
    collection (tiered multitenancy; a Qdrant server >= 1.16 and a collection created with
    RAGKB_VECTOR_STORE__COLLECTION__TIERED_MULTITENANCY=true). Reads and writes follow without
    a restart: Qdrant routes every request to the tenant's key once it is active. Exits 1 on
    the embedded store or local mode, which have no shard keys."""
    from core.settings import VectorStoreKind
    from core.tenancy import TenantNotFoundError, get_tenant_by_name
    from core.vectorstore.tiers import TieringUnsupported, promote_tenant, refuse_unless_server

    settings = get_settings()
    store = settings.vector_store
    try:
        refuse_unless_server(
            url=store.url if store.kind is VectorStoreKind.QDRANT else None,
            tiered=store.collection.tiered_multitenancy,
        )
    except TieringUnsupported as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    from qdrant_client import QdrantClient

    from core.db import create_db_engine, create_session_factory
    from core.index_set import IndexSet

    with _session(settings) as session:
        try:
            tenant_id = get_tenant_by_name(session, name=name).id
        except TenantNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    indexes = IndexSet(settings, create_session_factory(create_db_engine(settings)))
    collection = indexes.active().collection
    indexes.close()
    api_key = store.api_key.get_secret_value() if store.api_key else None
    client = QdrantClient(url=store.url, api_key=api_key)
    try:
        promotion = promote_tenant(
            client, collection, tenant_id, shards=shards,
            replication_factor=replication_factor, timeout_s=timeout_s,
        )  # fmt: skip
    except (TieringUnsupported, ValueError, TimeoutError) as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        client.close()
    console.print(
        f"tenant {name}: {promotion.points_moved} points moved to shard key "
        f"{promotion.shard_key!r} of {collection} in {promotion.seconds:.1f} s"
    )


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    scope: Annotated[
        list[str] | None,
        typer.Option(help="admin, ingest, query or read; repeat it. Default: ingest query read."),
    ] = None,
    expires: Annotated[
        datetime | None, typer.Option(help="When the key stops working (UTC), e.g. 2027-01-31.")
    ] = None,
    require_principals: Annotated[
        bool | None,
        typer.Option(
            "--require-principals/--no-require-principals",
            help="Queries with this key must name the end user (`principals`), else 400. "
            "Neither: the tenant's setting (`ragkb tenant settings`).",
        ),
    ] = None,
) -> None:
    """Create an API key; it is printed once and stored only hashed."""
    from core.audit import AuditAction, record
    from core.tenancy import (
        DEFAULT_SCOPES,
        TenantNotFoundError,
        get_tenant_by_name,
        issue_api_key,
        parse_scopes,
    )

    with _session(get_settings()) as session:
        try:
            tenant_row = get_tenant_by_name(session, name=tenant)
            scopes = parse_scopes(scope) if scope else DEFAULT_SCOPES
            expires_at = expires.replace(tzinfo=expires.tzinfo or UTC) if expires else None
            issued = issue_api_key(
                session, tenant=tenant_row, key_name=name, scopes=scopes, expires_at=expires_at,
                require_principals=require_principals,
            )  # fmt: skip
        except (TenantNotFoundError, ValueError) as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        record(session, tenant_id=tenant_row.id, action=AuditAction.KEY_CREATE,
               principal="cli", target=issued.api_key_id,
               details={"scopes": " ".join(sorted(scopes)),
                        "require_principals": require_principals})  # fmt: skip
        session.commit()
    err_console.print(
        f"key {issued.api_key_id} ({' '.join(sorted(scopes))}): store it now, it cannot be "
        "shown again"
    )
    typer.echo(issued.plaintext)


@key_app.command("list")
def key_list(tenant: Annotated[str, typer.Option(help="Tenant name.")]) -> None:
    """The tenant's keys (never their secrets)."""
    from core.tenancy import (
        TenantNotFoundError,
        get_tenant_by_name,
        key_requires_principals,
        key_scopes,
        list_api_keys,
    )

    with _session(get_settings()) as session:
        try:
            tenant_row = get_tenant_by_name(session, name=tenant)
        except TenantNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        typer.echo("id\tname\tprefix\tscopes\tcreated\texpires\trevoked\tprincipals")
        for row in list_api_keys(session, tenant_id=tenant_row.id):
            scopes = ",".join(sorted(key_scopes(row)))
            required = "required" if key_requires_principals(row) else "optional"
            typer.echo(
                f"{row.id}\t{row.name}\t{row.lookup_prefix}\t{scopes}\t{row.created_at:%F}"
                f"\t{row.expires_at or '-'}\t{row.revoked_at or '-'}\t{required}"
            )


@key_app.command("revoke")
def key_revoke(key_id: str, tenant: Annotated[str, typer.Option(help="Tenant name.")]) -> None:
    """Revoke a key at once (by its id, from `ragkb key list`)."""
    from core.audit import AuditAction, record
    from core.tenancy import (
        ApiKeyNotFoundError,
        TenantNotFoundError,
        get_tenant_by_name,
        revoke_api_key,
    )

    with _session(get_settings()) as session:
        try:
            tenant_row = get_tenant_by_name(session, name=tenant)
            revoke_api_key(session, tenant_id=tenant_row.id, api_key_id=key_id)
        except (TenantNotFoundError, ApiKeyNotFoundError) as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        record(session, tenant_id=tenant_row.id, action=AuditAction.KEY_REVOKE,
               principal="cli", target=key_id)  # fmt: skip
        session.commit()
    console.print(f"key {key_id} revoked")


@reader_app.command("prepare")
def reader_prepare() -> None:
    """Join and verify the embedded reader's weights (once; later runs reuse the file)."""
    from generation.reader_model import assemble_reader_model

    path = assemble_reader_model(get_settings().reader_model_file)
    console.print(f"reader model verified: {path}")


def _demo_key(settings: Settings) -> str:
    """The demo tenant's key, created on first start and kept (mode 600) in the data folder."""
    from core.tenancy import (
        ALL_SCOPES,
        TenantNotFoundError,
        create_tenant,
        get_tenant_by_name,
        issue_api_key,
    )

    key_file = settings.data_dir / "demo-api-key"
    if key_file.is_file():
        return key_file.read_text().strip()
    with _session(settings) as session:
        try:
            tenant = get_tenant_by_name(session, name=DEMO_TENANT)
        except TenantNotFoundError:
            tenant = create_tenant(session, name=DEMO_TENANT)
        # The demo key may do everything, the admin API included.
        issued = issue_api_key(session, tenant=tenant, key_name="demo", scopes=ALL_SCOPES)
        session.commit()
    key_file.write_text(issued.plaintext + "\n")
    key_file.chmod(0o600)
    return issued.plaintext


@app.command()
def serve(
    demo: Annotated[bool, typer.Option(help="Create a demo tenant and print its key.")] = False,
) -> None:
    """Run the API (and, by default, the worker threads and the CPU reader) in this process."""
    import uvicorn

    from api.app import create_app
    from core.db import run_migrations
    from core.logging import configure_logging
    from generation.reader_model import assemble_reader_model
    from generation.reader_server import ReaderServer

    settings = get_settings()
    configure_logging(json_lines=settings.http.json_logs)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings)
    reader: ReaderServer | None = None
    if settings.reader.managed:
        console.print("starting the embedded reader (llama.cpp, CPU)...")
        reader = ReaderServer(
            settings=settings.reader,
            model_file=assemble_reader_model(settings.reader_model_file),
            log_file=settings.data_dir / "logs" / "reader.log",
        )
        reader.start()
    try:
        url = f"http://{settings.api_host}:{settings.api_port}"
        typer.echo(f"ragkb API: {url}  (docs: {url}/docs)")
        if demo:
            typer.echo(f"demo tenant API key: {_demo_key(settings)}")
        sys.stdout.flush()
        uvicorn.run(
            create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None
        )
    finally:
        if reader is not None:
            reader.stop()


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker threads.")] = 2,
) -> None:
    """Run a Celery ingest worker process (production, with a Qdrant server and Redis)."""
    from workers.main import run_worker

    run_worker(get_settings(), concurrency=concurrency)


@app.command()
def check() -> None:
    """Print what is configured (secrets masked) and whether each dependency answers."""
    from api.checks import run_checks

    settings = get_settings()
    rows = run_checks(settings)
    width = max(len(name) for name, _, _ in rows)
    failed = False
    for name, ok, detail in rows:
        mark = "[green]ok[/green]  " if ok else "[red]FAIL[/red]"
        failed |= not ok
        console.print(f"{mark} {name.ljust(width)}  {detail}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def reconcile(
    dry_run: Annotated[bool, typer.Option(help="Report only; delete nothing.")] = False,
) -> None:
    """Compare document rows with the vector store; delete stale versions' points and points of
    documents that have no row. Exits 2 when a document's version is missing or partial in the
    store (upload it again), or, with --dry-run, on any drift found.

    Needs the store to itself (stop `ragkb serve` when the store is embedded); with a Qdrant
    server it can run beside live ingest (each document is checked under its write lock).
    """
    from core.db import create_db_engine, create_session_factory
    from core.index_set import IndexSet
    from ingest.originals import originals_for
    from ingest.reconcile import reconcile as run_reconcile

    settings = get_settings()
    with _session(settings) as session:
        # The active index (embedding model), as `ragkb reindex` left it.
        indexes = IndexSet(settings, create_session_factory(create_db_engine(settings)))
        try:
            store = indexes.store(indexes.active())
            report = run_reconcile(
                session, store, fix=not dry_run, originals=originals_for(settings)
            )
        finally:
            indexes.close()
    console.print(
        f"{report.documents_checked} documents checked, "
        f"{report.stale_points_deleted} stale points and "
        f"{report.orphan_points_deleted} points of documents with no row, "
        f"{report.stale_originals_deleted} kept original files of no current version "
        + ("found" if dry_run else "deleted")
    )
    for tenant_id, path, expected, stored in report.missing_or_partial:
        err_console.print(
            f"[red]drift[/red] tenant {tenant_id} {path}: {stored} of {expected} chunks stored; "
            "upload it again"
        )
    if report.missing_or_partial or (dry_run and report.drift):
        raise typer.Exit(2)


@app.command()
def reindex(
    model: Annotated[
        str | None, typer.Option(help="Embedding model to switch to (a packaged name).")
    ] = None,
    model_path: Annotated[
        Path | None, typer.Option(help="Folder of a sentence-transformers model named --model.")
    ] = None,
    drop_old: Annotated[
        bool, typer.Option(help="Delete the standby indexes (no rollback to them afterwards).")
    ] = False,
    here: Annotated[
        bool,
        typer.Option(
            help="Run the build in this process even with the embedded store (`ragkb serve` "
            "must then be stopped: it holds the store's files)."
        ),
    ] = False,
    cancel: Annotated[
        bool,
        typer.Option(help="Forget an unfinished (e.g. failed) build and delete its collection."),
    ] = False,
    status: Annotated[bool, typer.Option(help="List the indexes and exit.")] = False,
) -> None:
    """Re-embed every chunk with another model into a new collection beside the active one,
    then switch to it (queries and ingest go on; the old collection is kept until --drop-old).

    With a Qdrant server the build runs in this process (a Kubernetes Job). With the embedded
    store, the running `ragkb serve` owns the files: the build is handed to it and followed here.
    """
    from sqlalchemy.orm import sessionmaker

    from core.db import create_db_engine, create_session_factory, run_migrations
    from core.index_set import IndexSet
    from core.indexes import all_indexes, request_build
    from core.settings import VectorStoreKind
    from ingest.reindex import run_reindex

    settings = get_settings()
    run_migrations(settings)
    session_factory: sessionmaker[Any] = create_session_factory(create_db_engine(settings))
    indexes = IndexSet(settings, session_factory)
    store_settings = settings.vector_store
    embedded = store_settings.kind is VectorStoreKind.EMBEDDED
    try:
        if status or (model is None and not drop_old and not cancel):
            _print_indexes(session_factory)
            return
        if model is not None:
            # Before anything else: the first run registers the configured model as active.
            indexes.active()
            target = indexes.spec_for(model, model_path)
            with session_factory() as session:
                request_build(session, target)
                session.commit()
            if embedded and settings.worker.embedded and not here:
                _follow_build(session_factory, target.collection, store_settings.index_poll_s)
            else:
                report = run_reindex(
                    indexes=indexes, session_factory=session_factory,
                    collection=target.collection, batch=store_settings.reindex_batch,
                    settle_s=store_settings.reindex_settle_s,
                    lexical_neighbours=settings.ingest.chunking.lexical_neighbours,
                    alias=None if embedded else store_settings.collection_prefix,
                )  # fmt: skip
                console.print(
                    f"switched to {target.collection} ({target.model_name}) from "
                    f"{report.switched_from}: {report.points_copied} points re-embedded, "
                    f"{report.documents_caught_up} documents caught up, "
                    f"{report.documents_pruned} pruned, {report.seconds} s"
                )
        if drop_old or cancel:
            from core.indexes import IndexSpec
            from core.models import IndexState

            states = {IndexState.STANDBY} if drop_old else set()
            states |= {IndexState.BUILDING} if cancel else set()
            with session_factory() as session:
                dropped = [r for r in all_indexes(session) if r.state in states]
                specs = [IndexSpec.of(r) for r in dropped]
                for row in dropped:
                    session.delete(row)
                session.commit()
            for spec in specs:
                try:
                    indexes.drop_unopened(spec)
                    console.print(f"dropped {spec.collection}")
                except Exception as exc:
                    # The embedded store's files are held by `ragkb serve`: it deletes them
                    # itself on its next poll, now that the row is gone.
                    console.print(
                        f"{spec.collection}: unregistered; its data is deleted by the process "
                        f"that holds it ({type(exc).__name__})"
                    )
    finally:
        indexes.close()


def _print_indexes(session_factory: Any) -> None:
    from core.indexes import all_indexes

    with session_factory() as session:
        for row in all_indexes(session):
            line = f"{row.state:9} {row.collection}  {row.model_name}  dim {row.dimension}"
            if row.state == "building":
                line += f"  copied {row.points_copied}  runner {row.runner or '(waiting)'}"
            if row.error:
                line += f"  error: {row.error}"
            console.print(line, soft_wrap=True)


def _follow_build(session_factory: Any, collection: str, poll_s: float) -> None:
    """Wait for `ragkb serve` to run the requested build; exit non-zero if it fails."""
    from core.models import IndexState, VectorIndex

    waited_unclaimed = 0.0
    console.print(f"build of {collection} handed to the running `ragkb serve`...")
    while True:
        time.sleep(poll_s)
        with session_factory() as session:
            row = session.get(VectorIndex, collection)
            if row is None:
                raise typer.Exit(1)
            if row.state == IndexState.ACTIVE:
                console.print(f"switched to {collection} ({row.points_copied} points re-embedded)")
                return
            if row.error:
                err_console.print(f"[red]reindex failed[/red]: {row.error}")
                raise typer.Exit(1)
            if row.runner is None:
                waited_unclaimed += poll_s
                if waited_unclaimed > 6 * poll_s:
                    err_console.print(
                        "no `ragkb serve` took the build: start it (it runs the build), or run "
                        "`ragkb reindex --here` while it is stopped"
                    )
                    raise typer.Exit(2)
            else:
                console.print(f"  {row.points_copied} points re-embedded", highlight=False)


@app.command("worker-alive")
def worker_alive(
    max_age_s: Annotated[float, typer.Option(help="Oldest acceptable heartbeat.")] = 60.0,
) -> None:
    """Exit 0 if this pod's worker heartbeat is fresh (a Kubernetes liveness probe)."""
    from workers.main import heartbeat_age_s

    age = heartbeat_age_s(get_settings().worker.heartbeat_file)
    if age is None or age > max_age_s:
        err_console.print(f"worker heartbeat is stale: {age if age is not None else 'missing'}")
        raise typer.Exit(1)
    typer.echo(f"worker alive (heartbeat {age:.0f}s ago)")


@app.command()
def ingest(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, resolve_path=True)],
    url: ApiUrl = "http://127.0.0.1:8000",
    api_key: ApiKeyOpt = "",
    batch_size: Annotated[int, typer.Option(help="Files per upload request.")] = 50,
    ocr: Annotated[
        str, typer.Option(help="auto, or force: read every PDF page with OCR (bad text layers).")
    ] = "auto",
) -> None:
    """Upload every file under FOLDER (with its relative path) and follow the jobs."""
    files = folder_files(folder)
    if not files:
        err_console.print("no files under the folder")
        raise typer.Exit(1)
    with RagkbClient(url, api_key) as kb, _api_errors():
        job_ids: list[str] = []
        for batch in batched(files, batch_size):
            job_ids.append(kb.upload(batch, ocr=ocr).id)
            # On stdout, so that a script (or a user whose terminal closed) can follow the job.
            typer.echo(f"job {job_ids[-1]} started ({len(batch)} files)")
        jobs = _follow_jobs(kb, job_ids, total=len(files))
    failed = [f for job in jobs for f in job.files if f.state == "failed"]
    for f in failed:
        err_console.print(f"[red]failed[/red] {f.path}: {f.error}")
    done = sum(job.progress.done for job in jobs)
    skipped = sum(job.progress.skipped for job in jobs)
    console.print(f"{done} indexed, {skipped} unchanged, {len(failed)} failed")
    if failed:
        raise typer.Exit(2)


def _follow_jobs(kb: RagkbClient, job_ids: list[str], *, total: int) -> list[JobOut]:
    columns = (TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as progress:
        bar = progress.add_task("files", total=total)
        while True:
            jobs = [kb.get_job(job_id, include_files=False) for job_id in job_ids]
            finished = sum(j.progress.done + j.progress.failed + j.progress.skipped for j in jobs)
            progress.update(bar, completed=finished)
            if finished >= total:
                # The per-file list (for the failures) once, not at every poll.
                return [kb.get_job(job_id) for job_id in job_ids]
            time.sleep(0.5)


@contextmanager
def _api_errors() -> Iterator[None]:
    """An API refusal or an unreachable service: its reason on stderr, exit status 1."""
    try:
        yield
    except APIError as exc:
        err_console.print(f"[red]{exc.status_code}[/red]: {exc.detail}")
        raise typer.Exit(1) from exc
    except APIConnectionError as exc:
        err_console.print(f"[red]unreachable[/red]: {exc}")
        raise typer.Exit(1) from exc


@app.command()
def ask(
    question: str,
    url: ApiUrl = "http://127.0.0.1:8000",
    api_key: ApiKeyOpt = "",
    top_k: Annotated[int | None, typer.Option(help="Sources for the reader.")] = None,
    principal: Annotated[
        list[str] | None,
        typer.Option(help="Ask as an end user holding this principal (repeat it)."),
    ] = None,
) -> None:
    """Ask a question; print the answer, then each citation with its quote and whether the
    quote states the claim (and why not). A refusal says so ("NOT ANSWERED")."""
    with RagkbClient(url, api_key, timeout_s=600) as kb, _api_errors():
        result = kb.query(question, top_k=top_k, principals=principal).model_dump()
    # Plain echo: rich would wrap long quotes at the terminal's width.
    typer.echo("\n".join(format_answer(result)))


def format_answer(result: dict[str, Any]) -> list[str]:
    """The lines `ragkb ask` prints for a /v1/query response (plain text, no markup)."""
    if not result["answered"]:
        stages = result["stages"]
        if "no_evidence" in stages:
            why = "no passage of your documents is close enough to the question"
        elif "unsupported" in stages:
            why = "the reader's answer is stated by none of the passages it cited"
        else:
            why = "the reader found no answer in the retrieved passages"
        return [result["answer"], f"NOT ANSWERED: not in the sources ({why})."]
    lines = [result["answer"], ""]
    if not result["citations"]:
        lines.append("UNVERIFIED: the answer cites no source.")
    for c in result["citations"]:
        page = f", page {c['page']}" if c["page"] is not None else ""
        lines.append(f"[{c['number']}] {c['path']}{page}")
        status = (
            "verified" if c["verified"] else f"NOT VERIFIED: {c.get('reason') or 'unsupported'}"
        )
        lines.append(f"    claim: {c['claim']}")
        lines.append(f'    quote: "{" ".join(c["quote"].split())}"')
        lines.append(f"    {status}")
    if result["citations"]:
        unverified = sum(not c["verified"] for c in result["citations"])
        lines.append(
            "All citations verified."
            if result["verified"]
            else f"{unverified} of {len(result['citations'])} citations NOT verified."
        )
    if result.get("invalid_citation_numbers"):
        numbers = ", ".join(str(n) for n in result["invalid_citation_numbers"])
        lines.append(f"The reader cited sources that do not exist (removed): {numbers}")
    return lines


@eval_app.command("answers")
def eval_answers(
    corpus: Annotated[Path, typer.Option(exists=True, file_okay=False, help="BEIR-style QA set.")],
    sample: Annotated[int, typer.Option(help="Questions in the fixed random sample.")] = 100,
    absent_share: Annotated[
        float, typer.Option(help="Share asked with the passage left out.")
    ] = 0.2,
    distractors: Annotated[int, typer.Option(help="Extra passages indexed besides gold.")] = 100,
    top_k: Annotated[int, typer.Option(help="Sources per question.")] = 3,
    seed: Annotated[int, typer.Option()] = 2018,
    embedding_model: Annotated[str, typer.Option()] = "multilingual-e5-small",
    reader_url: Annotated[
        str | None, typer.Option(help="An OpenAI-compatible reader (vLLM); default: the CPU one.")
    ] = None,
    reader_model: Annotated[str, typer.Option()] = "qwen2.5-1.5b-instruct",
    out: Annotated[Path, typer.Option()] = Path("bench/results/answers-cmrc.json"),
    evidence_only: Annotated[
        bool,
        typer.Option(
            help="Only the evidence gate, no reader: answerable questions kept and absent ones "
            "refused, on any retrieval set (e.g. SciFact) plus --general questions."
        ),
    ] = False,
    general: Annotated[
        Path | None,
        typer.Option(help="JSON {questions: [...]} the corpus cannot answer (English sets)."),
    ] = None,
    index_in_process: Annotated[
        bool,
        typer.Option(
            help="Index the passages in this process as the pipeline does, without the upload "
            "and worker round trip (large samples)."
        ),
    ] = False,
    refuse_unsupported: Annotated[
        bool,
        typer.Option(
            help="Answer 'not in the sources' when no citation verifies (RAGKB_CITATIONS__"
            "REFUSE_UNSUPPORTED). Off (the default) such answers are kept, flagged unverified, "
            "and each row counts its verified citations, so both policies can be read from one "
            "run."
        ),
    ] = False,
    default_guards: Annotated[
        bool,
        typer.Option(
            help="Run with the default guards for unverified answers (RAGKB_CITATIONS__"
            "UNSUPPORTED_MIN_SCORES / _FUSED_SCORES) on, as a deployment answers; without it "
            "they are off and `with_default_guard` reads them from the rows."
        ),
    ] = False,
) -> None:
    """Answer correctness, citation precision and abstention on a QA set (see api/eval_answers)."""
    import shlex

    from api.eval_answers import run_answer_eval, run_evidence_eval

    if evidence_only:
        questions = json.loads(general.read_text())["questions"] if general else None
        result = run_evidence_eval(
            corpus, sample=sample, absent_share=absent_share, distractors=distractors,
            top_k=top_k, seed=seed, embedding_model=embedding_model, general=questions,
        )  # fmt: skip
        rows = result.pop("rows")
        result["command"] = shlex.join(
            ["ragkb", "eval", "answers", "--evidence-only", "--corpus", str(corpus),
             "--sample", str(sample), "--absent-share", str(absent_share),
             "--distractors", str(distractors), "--top-k", str(top_k), "--seed", str(seed),
             "--embedding-model", embedding_model]
            + (["--general", str(general)] if general else [])
        )  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        out.with_suffix(".rows.json").write_text(json.dumps(rows, ensure_ascii=False) + "\n")
        typer.echo("| metric | value |\n|---|---|")
        for name, value in result.items():
            if name != "command":
                typer.echo(f"| {name} | {value} |")
        return
    from generation.reader_model import MODEL_NAME, assemble_reader_model
    from generation.reader_server import ReaderServer

    settings = get_settings()
    server: ReaderServer | None = None
    backend = "vLLM (OpenAI API)" if reader_url else "llama.cpp server (CPU, 2 threads)"
    if reader_url is None:
        from core.settings import ReaderSettings

        reader_url = "http://127.0.0.1:8091/v1"
        server = ReaderServer(
            settings=ReaderSettings(base_url=reader_url, model=reader_model),
            model_file=assemble_reader_model(settings.reader_model_file),
            log_file=settings.data_dir / "logs" / "eval-reader.log",
        )
        server.start()
    try:
        result = run_answer_eval(
            corpus, sample=sample, absent_share=absent_share, distractors=distractors,
            top_k=top_k, seed=seed, embedding_model=embedding_model, reader_url=reader_url,
            reader_model=reader_model,
            general=json.loads(general.read_text())["questions"] if general else None,
            index_in_process=index_in_process, refuse_unsupported=refuse_unsupported,
            default_guards=default_guards,
        )  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    rows = result.pop("rows")
    result["reader"] = {"model": MODEL_NAME if server else reader_model, "backend": backend}
    result["embedding_model"] = embedding_model
    result["command"] = shlex.join(
        ["ragkb", "eval", "answers", "--corpus", str(corpus), "--sample", str(sample),
         "--absent-share", str(absent_share), "--distractors", str(distractors),
         "--top-k", str(top_k), "--seed", str(seed), "--embedding-model", embedding_model]
        + (["--general", str(general)] if general else [])
        + (["--index-in-process"] if index_in_process else [])
        + (["--refuse-unsupported"] if refuse_unsupported else [])
        + (["--default-guards"] if default_guards else [])
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".rows.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    metrics = ["exact_match", "f1", "citation_precision", "abstain_rate_when_absent",
               "no_evidence_when_absent", "reader_refused_when_absent",
               "unsupported_when_absent", "unsupported_when_present", "answerable_kept",
               "answered_when_present",
               "gold_passage_retrieved",
               "answered_with_citation", "verified_answers"]  # fmt: skip
    typer.echo("| metric | value |\n|---|---|")
    for name in [*metrics, "ttft_p50_ms", "total_p50_ms", "questions"]:
        typer.echo(f"| {name} | {result[name]} |")
    if not refuse_unsupported:
        for name in ("if_unsupported_refused", "if_cited_unsupported_refused",
                     "with_default_guard"):  # fmt: skip
            typer.echo(f"| {name} | {result[name]} |")
    _bar_chart({m: float(result[m]) for m in metrics}, out.with_suffix(".png"), str(corpus))


@eval_app.command("retrieval")
def eval_retrieval(
    corpus: Annotated[Path, typer.Option(exists=True, file_okay=False, help="BEIR-format set.")],
    split: Annotated[str | None, typer.Option(help="qrels split; default: every file.")] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            help="Extra configuration `name=mode[,rerank][,setting=value…]` (repeatable), "
            "e.g. `k20=hybrid,rrf_k=20`; the settings are RAGKB_RETRIEVAL__* names."
        ),
    ] = None,
    embedding_model: Annotated[str, typer.Option()] = "all-MiniLM-L6-v2",
    rerank_model: Annotated[
        Path | None, typer.Option(help="Cross-encoder folder: adds a hybrid + rerank row.")
    ] = None,
    llamaindex: Annotated[bool, typer.Option(help="Add LlamaIndex's default retriever.")] = False,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep the index here and reuse it on the next run.")
    ] = None,
    out: Annotated[Path, typer.Option()] = Path("bench/results/retrieval.json"),
) -> None:
    """nDCG@10, Recall@10/100, MRR and latency per configuration (see api/eval_retrieval)."""
    import shlex
    import sys

    from api.eval_answers import throwaway_service
    from api.eval_retrieval import (
        DEFAULT_CONFIGS,
        RetrievalConfig,
        bar_chart,
        config_from_spec,
        ingest_corpus,
        load_beir,
        markdown_table,
        run_config,
        run_llamaindex_baseline,
    )
    from core.settings import EmbeddingSettings, ReaderSettings, RerankBackend, RerankSettings

    beir = load_beir(corpus, split)
    configs = [*DEFAULT_CONFIGS, *(config_from_spec(c) for c in config or [])]
    rerank = RerankSettings()
    if rerank_model is not None:
        rerank = RerankSettings(backend=RerankBackend.CROSS_ENCODER, model_path=rerank_model)
        configs.append(RetrievalConfig("hybrid + rerank", "hybrid", rerank=True))
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with throwaway_service(
        workdir=workdir,
        embedding=EmbeddingSettings(model=embedding_model),
        reader=ReaderSettings(managed=False),
        rerank=rerank,
    ) as service:
        served = service.runtime.binding.spec.model_name
        if served != embedding_model:
            # The workdir's active index decides what is served (see `ragkb reindex`).
            err_console.print(f"{workdir} is indexed with {served}: use another --workdir")
            raise typer.Exit(2)
        indexed = service.runtime.store.count(tenant_id=service.tenant_id)
        ingest_s = ingest_corpus(service, beir) if indexed == 0 else None
        results = []
        for each in configs:
            results.append(run_config(service, beir, each))
            typer.echo(f"{each.name}: nDCG@10 {results[-1]['ndcg@10']}")
        if llamaindex:
            embedder = service.runtime.embedder
            results.append(
                run_llamaindex_baseline(
                    beir, embed_passages=embedder.embed_passages, embed_query=embedder.embed_query
                )
            )
        chunks = service.runtime.store.count(tenant_id=service.tenant_id)
    report = {
        "corpus": str(corpus),
        "split": split,
        "documents": len(beir.documents),
        "queries": len(beir.queries),
        "chunks": chunks,
        "embedding_model": embedding_model,
        "ingest_seconds": round(ingest_s, 1) if ingest_s is not None else None,
        "results": results,
        "command": shlex.join(["ragkb", "eval", "retrieval", *sys.argv[3:]]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    table = markdown_table(results)
    out.with_suffix(".md").write_text(table + "\n")
    typer.echo(table)
    bar_chart(results, out.with_suffix(".png"), f"{corpus.name}: {len(beir.queries)} queries")


def _bar_chart(values: dict[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(list(values), list(values.values()))
    ax.set_xlim(0, 1)
    ax.set_title(f"ragkb answers: {title}")
    for i, v in enumerate(values.values()):
        ax.text(v + 0.01, i, f"{v:.2f}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()
