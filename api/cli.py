"""The `ragkb` command: serve, worker, tenants and keys, ingest a folder, ask."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
) -> None:
    """Create an API key; it is printed once and stored only hashed."""
    from core.tenancy import TenantNotFoundError, get_tenant_by_name, issue_api_key

    with _session(get_settings()) as session:
        try:
            tenant_row = get_tenant_by_name(session, name=tenant)
        except TenantNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        issued = issue_api_key(session, tenant=tenant_row, key_name=name)
        session.commit()
    err_console.print("store this key now: it cannot be shown again")
    typer.echo(issued.plaintext)


@reader_app.command("prepare")
def reader_prepare() -> None:
    """Join and verify the embedded reader's weights (once; later runs reuse the file)."""
    from generation.reader_model import assemble_reader_model

    path = assemble_reader_model(get_settings().reader_model_file)
    console.print(f"reader model verified: {path}")


def _demo_key(settings: Settings) -> str:
    """The demo tenant's key, created on first start and kept (mode 600) in the data folder."""
    from core.tenancy import TenantNotFoundError, create_tenant, get_tenant_by_name, issue_api_key

    key_file = settings.data_dir / "demo-api-key"
    if key_file.is_file():
        return key_file.read_text().strip()
    with _session(settings) as session:
        try:
            tenant = get_tenant_by_name(session, name=DEMO_TENANT)
        except TenantNotFoundError:
            tenant = create_tenant(session, name=DEMO_TENANT)
        issued = issue_api_key(session, tenant=tenant, key_name="demo")
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
    from generation.reader_model import assemble_reader_model
    from generation.reader_server import ReaderServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
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
        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)
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
    """Compare document rows with the vector store; delete stale versions' points.

    Needs the store to itself (stop `ragkb serve` when the store is embedded).
    """
    from core.embedding import create_embedder
    from core.vectorstore.factory import create_vector_store
    from ingest.reconcile import reconcile as run_reconcile

    settings = get_settings()
    embedder = create_embedder(settings.embedding)
    store = create_vector_store(
        settings, model_name=embedder.model_name, dimension=embedder.dimension
    )
    try:
        with _session(settings) as session:
            report = run_reconcile(session, store, fix=not dry_run)
    finally:
        store.close()
    console.print(
        f"{report.documents_checked} documents checked, "
        f"{report.stale_points_deleted} stale points deleted"
    )
    for tenant_id, path, expected, stored in report.missing_or_partial:
        err_console.print(
            f"[red]drift[/red] tenant {tenant_id} {path}: {stored} of {expected} chunks stored; "
            "upload it again"
        )
    if report.missing_or_partial:
        raise typer.Exit(2)


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
) -> None:
    """Upload every file under FOLDER (with its relative path) and follow the jobs."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    if not files:
        err_console.print("no files under the folder")
        raise typer.Exit(1)
    headers = {"Authorization": f"Bearer {api_key}"}
    job_ids: list[str] = []
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            handles = [p.open("rb") for p in batch]
            try:
                response = client.post(
                    "/v1/ingest/jobs",
                    files=[
                        ("files", (p.relative_to(folder).as_posix(), h))
                        for p, h in zip(batch, handles, strict=True)
                    ],
                )
            finally:
                for h in handles:
                    h.close()
            _raise_for_api_error(response)
            job_ids.append(response.json()["id"])
        jobs = _follow_jobs(client, job_ids, total=len(files))
    failed = [f for job in jobs for f in job["files"] if f["state"] == "failed"]
    for f in failed:
        err_console.print(f"[red]failed[/red] {f['path']}: {f['error']}")
    done = sum(job["progress"]["done"] for job in jobs)
    skipped = sum(job["progress"]["skipped"] for job in jobs)
    console.print(f"{done} indexed, {skipped} unchanged, {len(failed)} failed")
    if failed:
        raise typer.Exit(2)


def _follow_jobs(client: httpx.Client, job_ids: list[str], *, total: int) -> list[dict[str, Any]]:
    columns = (TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as progress:
        bar = progress.add_task("files", total=total)
        while True:
            jobs = [_get_job(client, job_id, include_files=False) for job_id in job_ids]
            finished = sum(
                j["progress"]["done"] + j["progress"]["failed"] + j["progress"]["skipped"]
                for j in jobs
            )
            progress.update(bar, completed=finished)
            if finished >= total:
                # The per-file list (for the failures) once, not at every poll.
                return [_get_job(client, job_id, include_files=True) for job_id in job_ids]
            time.sleep(0.5)


def _get_job(client: httpx.Client, job_id: str, *, include_files: bool) -> dict[str, Any]:
    response = client.get(
        f"/v1/ingest/jobs/{job_id}", params={"include_files": str(include_files).lower()}
    )
    _raise_for_api_error(response)
    job: dict[str, Any] = response.json()
    return job


@app.command()
def ask(
    question: str,
    url: ApiUrl = "http://127.0.0.1:8000",
    api_key: ApiKeyOpt = "",
    top_k: Annotated[int | None, typer.Option(help="Sources for the reader.")] = None,
) -> None:
    """Ask a question; print the answer and its citations."""
    body: dict[str, Any] = {"question": question}
    if top_k is not None:
        body["top_k"] = top_k
    response = httpx.post(
        f"{url}/v1/query", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=600
    )
    _raise_for_api_error(response)
    result = response.json()
    console.print(result["answer"])
    for c in result["citations"]:
        page = f", page {c['page']}" if c["page"] is not None else ""
        console.print(f"  [{c['number']}] {c['path']}{page}")


def _raise_for_api_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    err_console.print(f"[red]{response.status_code}[/red]: {detail}")
    raise typer.Exit(1)


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
) -> None:
    """Answer correctness, citation precision and abstention on a QA set (see api/eval_answers)."""
    import shlex

    from api.eval_answers import run_answer_eval
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
         "--top-k", str(top_k), "--seed", str(seed)]
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".rows.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    metrics = ["exact_match", "f1", "citation_precision", "abstain_rate_when_absent",
               "gold_passage_retrieved", "answered_with_citation", "verified_answers"]  # fmt: skip
    typer.echo("| metric | value |\n|---|---|")
    for name in [*metrics, "ttft_p50_ms", "total_p50_ms", "questions"]:
        typer.echo(f"| {name} | {result[name]} |")
    _bar_chart({m: float(result[m]) for m in metrics}, out.with_suffix(".png"), str(corpus))


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
