// ragkb console. Calls only the public /v1 API with the signed-in key as a Bearer header.
// Everything that comes from a document, a file name or metadata is inserted as text
// (textContent / text nodes), never as HTML.
"use strict";

const KEY = "ragkb.key";
const SCOPES = "ragkb.scopes";
const REASON = "ragkb.reason";
const PROBE_ID = "00000000-0000-0000-0000-000000000000";

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function $(id) {
  return document.getElementById(id);
}

// An element with attributes and children; strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function notice(message) {
  const box = $("notice");
  box.textContent = message;
  box.hidden = !message;
}

let signingOut = false;

function signOut(reason) {
  // The first refusal's reason is the one shown; later refused calls of the same page add
  // nothing (and must not restart the navigation).
  if (signingOut) return;
  signingOut = true;
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(SCOPES);
  if (reason) sessionStorage.setItem(REASON, reason);
  else sessionStorage.removeItem(REASON);
  window.location.assign("/console");
}

function detailOf(body, fallback) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && body.detail !== undefined) return JSON.stringify(body.detail);
  return fallback;
}

// One call to the /v1 API. 401 ends the session (back to sign-in with the reason); 429 says
// when to retry; any other error is thrown with the server's reason.
async function api(method, path, { json, form, key, raw } = {}) {
  const headers = { Authorization: "Bearer " + (key || sessionStorage.getItem(KEY) || "") };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  const response = await fetch(path, { method, headers, body, credentials: "omit" });
  if (raw && response.ok) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (_) {
    parsed = null;
  }
  if (response.ok) return parsed;
  const detail = detailOf(parsed, response.statusText);
  if (response.status === 401 && !key) {
    signOut("Signed out: " + detail);
    throw new ApiError(401, detail);
  }
  if (response.status === 429) {
    const after = response.headers.get("Retry-After");
    throw new ApiError(429, "Too many requests: retry in " + (after || "a few") + " s. " + detail);
  }
  if (response.status === 413) throw new ApiError(413, "Refused (quota or size): " + detail);
  if (response.status === 403) throw new ApiError(403, "Not allowed for this key: " + detail);
  throw new ApiError(response.status, detail);
}

function report(error) {
  if (error instanceof ApiError && error.status === 401) return;
  notice(error.message || String(error));
}

function commaList(value) {
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// A datetime-local field's value (local time) as an ISO 8601 instant, or "" when empty.
function isoFrom(input) {
  return input.value ? new Date(input.value).toISOString() : "";
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
}

function documentHref(id) {
  return "/console/documents/" + encodeURIComponent(id);
}

// ---- sign-in ----------------------------------------------------------------------------

async function probeScopes(key) {
  const scopes = [];
  const status = async (method, path, json) => {
    const response = await fetch(path, {
      method,
      credentials: "omit",
      headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    if (response.status === 401) {
      const body = await response.json().catch(() => null);
      throw new ApiError(401, detailOf(body, "the key was refused"));
    }
    return response.status;
  };
  if ((await status("GET", "/v1/ingest/jobs?limit=1")) === 200) scopes.push("read");
  // A job id that does not exist: 404 means the key may ingest, 403 that it may not.
  if ((await status("POST", "/v1/ingest/jobs/" + PROBE_ID + "/retry")) === 404) scopes.push("ingest");
  // An empty search is refused as invalid (422) only once the scope has been checked.
  if ((await status("POST", "/v1/search", {})) === 422) scopes.push("query");
  if ((await status("GET", "/v1/admin/keys")) === 200) scopes.push("admin");
  return scopes;
}

function initSignIn() {
  // The reason stays until the next sign-in: a page whose calls were refused may send the
  // browser here more than once (each refused call signs out), and every load must show it.
  const reason = sessionStorage.getItem(REASON);
  if (reason) {
    $("signin-reason").textContent = reason;
    $("signin-reason").hidden = false;
  }
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    try {
      const scopes = await probeScopes(key);
      sessionStorage.setItem(KEY, key);
      sessionStorage.setItem(SCOPES, JSON.stringify(scopes));
      sessionStorage.removeItem(REASON);
      const first = scopes.includes("read") ? "documents" : scopes.includes("query") ? "ask" : "admin";
      window.location.assign("/console/" + first);
    } catch (error) {
      $("signin-reason").textContent = "Sign-in failed: " + error.message;
      $("signin-reason").hidden = false;
    }
  });
}

// ---- documents --------------------------------------------------------------------------

let documentsCursor = null;
// Each load's number: a slower, older answer (filters changed meanwhile) is not drawn.
let documentsLoad = 0;

async function loadDocuments(append) {
  const mine = ++documentsLoad;
  const params = new URLSearchParams({ limit: "50" });
  const prefix = $("filter-prefix").value.trim();
  const contains = $("filter-contains").value.trim();
  if (prefix) params.set("path_prefix", prefix);
  if (contains) params.set("path_contains", contains);
  const fileType = $("filter-type").value.trim().replace(/^\./, "");
  if (fileType) params.set("file_type", fileType);
  const since = isoFrom($("filter-since"));
  if (since) params.set("updated_since", since);
  if (append && documentsCursor) params.set("cursor", documentsCursor);
  const page = await api("GET", "/v1/documents?" + params);
  if (mine !== documentsLoad) return;
  const body = $("documents").tBodies[0];
  if (!append) body.replaceChildren();
  if (!append && !page.documents.length) {
    body.append(el("tr", { className: "empty" }, el("td", { colspan: 5, text: "No documents match." })));
  }
  for (const d of page.documents) {
    body.append(
      el("tr", {},
        el("td", {}, el("a", { href: documentHref(d.id), text: d.path })),
        el("td", { text: d.title || "" }),
        el("td", { text: d.content_type }),
        el("td", { text: d.chunk_count }),
        el("td", { text: when(d.updated_at) })));
  }
  documentsCursor = page.next_cursor;
  $("docs-more").hidden = !documentsCursor;
}

function progressLine(job) {
  const p = job.progress;
  const parts = [
    job.status,
    `${p.done + p.failed + p.skipped}/${p.total} files`,
    `${p.done} indexed`,
    `${p.failed} failed`,
    `${p.chunks_indexed} chunks`,
  ];
  if (p.files_per_s) parts.push(`${p.files_per_s} files/s`);
  if (p.eta_s !== null && p.eta_s !== undefined && p.eta_s > 0) parts.push(`ETA ${p.eta_s} s`);
  return parts.join(" · ");
}

let followedJob = null;

async function followJob(jobId) {
  const box = $("job-progress");
  followedJob = jobId;
  for (;;) {
    if (followedJob !== jobId) return; // another job was opened since
    const job = await api("GET", "/v1/ingest/jobs/" + encodeURIComponent(jobId));
    const failed = job.files.filter((f) => f.state === "failed");
    box.replaceChildren(
      el("p", { id: "job-status", "data-job": job.id, "data-status": job.status,
                text: "Job " + job.id.slice(0, 8) + ": " + progressLine(job) }),
      el("progress", { max: job.progress.total, value: job.progress.total - job.progress.queued - job.progress.running,
                       "aria-label": "Job progress" }),
      el("ul", { id: "failed-files" },
        ...failed.map((f) => el("li", { className: "failed", "data-path": f.path },
          el("strong", { text: f.path }), ": ", el("span", { className: "reason", text: f.error || "failed" })))));
    if (job.status.startsWith("completed")) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await Promise.all([loadJobs(), loadDocuments(false)]);
}

async function loadJobs() {
  const page = await api("GET", "/v1/ingest/jobs?limit=10");
  const canIngest = hasScope("ingest");
  $("jobs").tBodies[0].replaceChildren(
    ...page.jobs.map((job) =>
      el("tr", {},
        el("td", {}, el("button", { type: "button", className: "link", text: job.id.slice(0, 8),
                                    "aria-label": "Show job " + job.id,
                                    onclick: () => followJob(job.id).catch(report) })),
        el("td", { text: job.status }),
        el("td", { text: `${job.progress.done}/${job.progress.total} (${job.progress.failed} failed)` }),
        el("td", { text: job.progress.chunks_indexed }),
        el("td", { text: when(job.created_at) }),
        el("td", {}, canIngest && job.progress.failed
          ? el("button", { type: "button", text: "Retry failed", onclick: () => retryJob(job.id) })
          : null))));
}

async function retryJob(jobId) {
  try {
    await api("POST", "/v1/ingest/jobs/" + encodeURIComponent(jobId) + "/retry");
    await followJob(jobId);
  } catch (error) {
    report(error);
  }
}

// Files dropped on the drop zone, each with its path relative to what was dropped.
let dropped = [];

// Every file under a dropped entry (a folder is read recursively), with its relative path.
async function entryFiles(entry, prefix) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: prefix + entry.name }];
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((c) => entryFiles(c, prefix + entry.name + "/")));
  return nested.flat();
}

async function onDrop(event) {
  event.preventDefault();
  $("drop-zone").classList.remove("over");
  const items = [...event.dataTransfer.items];
  const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (entries.length && entries.every(Boolean)) {
    dropped = (await Promise.all(entries.map((e) => entryFiles(e, "")))).flat();
  } else {
    dropped = [...event.dataTransfer.files].map((file) => ({ file, path: file.name }));
  }
  $("dropped").textContent = `${dropped.length} file(s) ready to upload.`;
}

function parseMetadata(text) {
  const metadata = {};
  for (const pair of commaList(text)) {
    const at = pair.indexOf("=");
    if (at < 1) throw new Error("metadata must be key=value pairs: " + pair);
    metadata[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return metadata;
}

async function upload(event) {
  event.preventDefault();
  notice("");
  const form = new FormData();
  // A folder's files keep their paths relative to the folder chosen (or dropped).
  const files = [...$("upload-files").files, ...$("upload-folder").files]
    .map((file) => ({ file, path: file.webkitRelativePath || file.name }))
    .concat(dropped);
  if (!files.length) {
    notice("Choose or drop files or a folder first.");
    return;
  }
  for (const { file, path } of files) form.append("files", file, path);
  const principals = commaList($("upload-principals").value);
  if (principals.length) form.append("principals", JSON.stringify(principals));
  try {
    const metadata = parseMetadata($("upload-metadata").value);
    if (Object.keys(metadata).length) form.append("metadata", JSON.stringify(metadata));
    const job = await api("POST", "/v1/ingest/jobs", { form });
    $("upload-form").reset();
    dropped = [];
    $("dropped").textContent = "";
    await followJob(job.id);
  } catch (error) {
    report(error);
  }
}

function initDocuments() {
  $("upload-form").addEventListener("submit", upload);
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => onDrop(event).catch(report));
  $("doc-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDocuments(false).catch(report);
  });
  $("doc-filter").addEventListener("reset", () => {
    // After the form has cleared its fields.
    setTimeout(() => loadDocuments(false).catch(report), 0);
  });
  $("docs-more").addEventListener("click", () => loadDocuments(true).catch(report));
  loadDocuments(false).catch(report);
  loadJobs().catch(report);
}

// ---- one document -----------------------------------------------------------------------

async function initDocument() {
  const id = decodeURIComponent(window.location.pathname.split("/").pop());
  const base = "/v1/documents/" + encodeURIComponent(id);
  let offset = 0;
  const loadChunks = async () => {
    const page = await api("GET", `${base}/chunks?limit=100&offset=${offset}`);
    for (const c of page.chunks) {
      const where = [`#${c.chunk_index}`, c.page ? `page ${c.page}` : null, c.section,
                     `chars ${c.char_start}–${c.char_end}`].filter(Boolean).join(" · ");
      $("chunks").append(el("li", { className: "chunk" },
        el("div", { className: "chunk-head", text: where }), el("div", { className: "chunk-text", text: c.text })));
    }
    offset = page.next_offset || 0;
    $("chunks-more").hidden = page.next_offset === null;
  };
  $("chunks-more").addEventListener("click", () => loadChunks().catch(report));
  try {
    const doc = await api("GET", base);
    $("doc-title").textContent = doc.title || doc.path;
    const rows = [["Path", doc.path], ["Type", doc.content_type], ["Size", `${doc.size_bytes} bytes`],
                  ["Chunks", doc.chunk_count], ["Updated", when(doc.updated_at)],
                  ["Readable by", doc.principals ? doc.principals.join(", ") : "everyone in the tenant"],
                  ["Metadata", JSON.stringify(doc.metadata || {})], ["Version", doc.version_sha256]];
    $("doc-meta").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    $("doc-download").addEventListener("click", () => downloadOriginal(base, doc.path).catch(report));
    $("doc-delete").addEventListener("click", async () => {
      if (!window.confirm("Delete " + doc.path + " and its chunks? This cannot be undone.")) return;
      try {
        await api("DELETE", base);
        window.location.assign("/console/documents");
      } catch (error) {
        report(error);
      }
    });
    await loadChunks();
    const text = await api("GET", `${base}/text?max_chars=100000`);
    $("doc-text").textContent = text.text + (text.next_char_start ? "\n…" : "");
  } catch (error) {
    report(error);
  }
}

// The original file, fetched with the key (a plain link could not carry it) and saved under
// the last part of its path.
async function downloadOriginal(base, path) {
  notice("");
  let response;
  try {
    response = await api("GET", base + "/file", { raw: true });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      notice("The original file is not kept for this document: " + error.message);
      return;
    }
    throw error;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: path.split("/").pop() || "document", hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---- ask --------------------------------------------------------------------------------

let conversationId = null;

// Server-sent events from a fetch body: yields {event, data} per message.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of message.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      yield { event, data: data.length ? JSON.parse(data.join("\n")) : null };
    }
  }
}

async function openSource(cite) {
  const start = Math.max(0, cite.char_start - 1500);
  const path = `/v1/documents/${encodeURIComponent(cite.document_id)}/text?char_start=${start}&char_end=${cite.char_end + 1500}`;
  try {
    const text = await api("GET", path);
    const from = cite.char_start - text.char_start;
    const to = cite.char_end - text.char_start;
    const mark = el("mark", { id: "quote", text: text.text.slice(from, to) });
    $("source-text").replaceChildren(text.text.slice(0, from), mark, text.text.slice(to));
    const where = [cite.path, cite.page ? "page " + cite.page : null, cite.section].filter(Boolean).join(" · ");
    const state = cite.verified === undefined ? "" : cite.verified ? "verified citation" : "unverified citation";
    $("source-where").replaceChildren(
      el("a", { href: documentHref(cite.document_id), text: where }), state ? " — " + state : "");
    mark.scrollIntoView({ block: "center" });
  } catch (error) {
    report(error);
  }
}

function renderAnswer(box, result) {
  const byNumber = new Map();
  for (const s of result.sources) byNumber.set(s.number, { ...s, verified: undefined });
  for (const c of result.citations) if (!byNumber.has(-c.number)) byNumber.set(-c.number, c);
  const nodes = [];
  if (!result.answered) nodes.push(el("strong", { text: "Not in the sources. " }));
  result.answer.split(/(\[\d+\])/).forEach((part) => {
    const m = /^\[(\d+)\]$/.exec(part);
    const cite = m && (byNumber.get(-Number(m[1])) || byNumber.get(Number(m[1])));
    if (!cite) {
      nodes.push(part);
      return;
    }
    const verified = cite.verified === true;
    nodes.push(el("a", { href: "#", className: "cite " + (verified ? "verified" : "unverified"),
                         "data-number": m[1], title: (verified ? "Verified: " : "Not verified: ") + cite.path,
                         onclick: (event) => { event.preventDefault(); openSource(cite); } }, part));
  });
  box.className = "answer" + (result.answered ? "" : " refusal");
  box.dataset.answered = String(result.answered);
  box.replaceChildren(...nodes);
  box.append(el("div", {}, el("span", { className: "badge " + (result.verified ? "ok" : "warn"),
    text: result.verified ? "verified" : result.answered ? "not verified" : "refused" })));
}

async function ask(event) {
  event.preventDefault();
  notice("");
  const question = $("question").value.trim();
  if (!question) return;
  const body = { question, stream: true };
  if (conversationId) body.conversation_id = conversationId;
  const principals = commaList($("ask-principals").value);
  if (principals.length) body.principals = principals;
  const answer = el("div", { className: "answer", "aria-busy": "true" });
  $("conversation").append(el("div", { className: "question", text: question }), answer);
  $("question").value = "";
  try {
    const response = await api("POST", "/v1/query", { json: body, raw: true });
    let streamed = "";
    for await (const { event: kind, data } of sseEvents(response)) {
      if (kind === "sources") conversationId = data.conversation_id;
      else if (kind === "token") {
        streamed += data.text;
        answer.textContent = streamed;
      } else if (kind === "done") {
        conversationId = data.conversation_id;
        renderAnswer(answer, data);
      } else if (kind === "error") throw new Error(data.detail);
    }
  } catch (error) {
    report(error);
  } finally {
    answer.removeAttribute("aria-busy");
  }
}

function initAsk() {
  $("ask-form").addEventListener("submit", ask);
  $("new-conversation").addEventListener("click", () => {
    conversationId = null;
    $("conversation").replaceChildren();
  });
}

// ---- search -----------------------------------------------------------------------------

function fixed(value) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(3);
}

async function search(event) {
  event.preventDefault();
  notice("");
  const body = { query: $("search-query").value.trim(), top_k: Number($("search-topk").value) || 10 };
  if ($("search-mode").value) body.mode = $("search-mode").value;
  if ($("search-rerank").value) body.rerank = $("search-rerank").value === "true";
  if ($("search-prefix").value.trim()) body.filters = { path_prefix: $("search-prefix").value.trim() };
  const principals = commaList($("search-principals").value);
  if (principals.length) body.principals = principals;
  try {
    const result = await api("POST", "/v1/search", { json: body });
    $("search-timings").textContent = "Stages: " + result.stages.join(" → ") + " · " +
      Object.entries(result.timings_ms).map(([k, v]) => `${k} ${Number(v).toFixed(1)} ms`).join(", ");
    $("hits").replaceChildren(...result.hits.map((h) =>
      el("li", {},
        el("a", { href: documentHref(h.document_id),
                  text: [h.path, h.page ? "page " + h.page : null, h.section].filter(Boolean).join(" · ") }),
        el("div", { className: "chunk-head",
                    text: `fused ${fixed(h.score)} · dense ${fixed(h.dense_score)} · rerank ${fixed(h.rerank_score)}` }),
        el("div", { className: "chunk-text", text: h.text }))));
  } catch (error) {
    report(error);
  }
}

function initSearch() {
  $("search-form").addEventListener("submit", search);
}

// ---- admin ------------------------------------------------------------------------------

let auditOffset = 0;
let auditLoad = 0;

async function loadKeys() {
  const page = await api("GET", "/v1/admin/keys");
  $("keys").tBodies[0].replaceChildren(...page.keys.map((k) =>
    el("tr", { "data-key-id": k.id },
      el("td", { text: k.name }), el("td", { text: k.scopes.join(", ") }),
      el("td", { text: when(k.created_at) }),
      el("td", { className: expired(k) ? "failed" : "",
                 text: k.expires_at ? when(k.expires_at) + (expired(k) ? " (expired)" : "") : "never" }),
      el("td", { text: when(k.revoked_at) }),
      el("td", {}, k.revoked_at ? null : el("button", { type: "button", className: "danger", text: "Revoke",
        "aria-label": "Revoke key " + k.name, onclick: () => revokeKey(k) })))));
}

function expired(k) {
  return Boolean(k.expires_at) && new Date(k.expires_at) <= new Date();
}

// The tenant's effective limits beside what it uses now (GET /v1/admin/tenant).
async function loadLimits() {
  const tenant = await api("GET", "/v1/admin/tenant");
  const l = tenant.limits;
  const source = (name) => (tenant.overrides[name] === null ? "default" : "this tenant");
  const rows = [
    ["Documents", l.max_documents, tenant.documents, "max_documents"],
    ["Stored bytes", bytes(l.max_stored_bytes), bytes(tenant.stored_bytes), "max_stored_bytes"],
    ["Queries per minute", l.queries_per_minute, "", "queries_per_minute"],
    ["Query burst", l.query_burst, "", "query_burst"],
    ["Uploads per minute", l.ingest_per_minute, "", "ingest_per_minute"],
    ["Upload burst", l.ingest_burst, "", "ingest_burst"],
  ];
  $("limits").tBodies[0].replaceChildren(...rows.map(([label, value, used, name]) =>
    el("tr", { "data-limit": name }, el("td", { text: label }), el("td", { text: value }),
       el("td", { text: used }), el("td", { text: source(name) }))));
}

async function revokeKey(k) {
  if (!window.confirm("Revoke the key " + k.name + "? Every caller using it is refused at once.")) return;
  try {
    await api("DELETE", "/v1/admin/keys/" + encodeURIComponent(k.id));
    await loadKeys();
  } catch (error) {
    report(error);
  }
}

async function loadAudit(append) {
  const mine = ++auditLoad;
  if (!append) auditOffset = 0;
  const params = new URLSearchParams({ limit: "50", offset: String(auditOffset) });
  if ($("audit-action").value) params.set("action", $("audit-action").value);
  const since = isoFrom($("audit-since"));
  const until = isoFrom($("audit-until"));
  if (since) params.set("since", since);
  if (until) params.set("until", until);
  const page = await api("GET", "/v1/admin/audit?" + params);
  if (mine !== auditLoad) return;
  const body = $("audit").tBodies[0];
  if (!append) body.replaceChildren();
  if (!append && !page.events.length) {
    body.append(el("tr", { className: "empty" }, el("td", { colspan: 4, text: "No events match." })));
  }
  for (const e of page.events) {
    body.append(el("tr", {}, el("td", { text: when(e.at) }), el("td", { text: e.action }),
      el("td", { text: e.outcome }), el("td", { text: e.target || "" })));
  }
  auditOffset = page.next_offset || 0;
  $("audit-more").hidden = page.next_offset === null;
}

function initAdmin() {
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const json = { name: $("key-name").value.trim(), scopes: commaList($("key-scopes").value) };
      const expires = isoFrom($("key-expires"));
      if (expires) json.expires_at = expires;
      const issued = await api("POST", "/v1/admin/keys", { json });
      $("new-key").textContent = "New key (shown once, copy it now): " + issued.key +
        (issued.expires_at ? " — expires " + when(issued.expires_at) : " — does not expire");
      $("new-key").hidden = false;
      await loadKeys();
    } catch (error) {
      report(error);
    }
  });
  $("audit-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit(false).catch(report);
  });
  $("audit-more").addEventListener("click", () => loadAudit(true).catch(report));
  loadKeys().catch(report);
  loadLimits().catch(report);
  loadAudit(false).catch(report);
}

// ---- system -----------------------------------------------------------------------------

async function loadSystem() {
  $("system-status").textContent = "Checking…";
  const system = await api("GET", "/v1/admin/system");
  $("system-status").textContent = system.status === "ready"
    ? "Every dependency answers." : "Degraded: a dependency does not answer (below).";
  $("system-status").dataset.status = system.status;
  $("health").tBodies[0].replaceChildren(...system.checks.map((c) =>
    el("tr", { "data-check": c.name, className: c.ok ? "" : "failed" },
      el("td", { text: c.name.replace("_", " ") }), el("td", { className: "state", text: c.ok ? "ok" : "failing" }),
      el("td", { text: c.detail || "" }))));
  const active = system.active_index;
  $("active-index").replaceChildren(...(active ? [
    ["Collection", active.collection], ["Embedding model", active.model_name],
    ["Dimension", active.dimension], ["Active since", when(active.activated_at)],
  ] : [["Active index", "none"]]).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  const building = system.reindex;
  $("reindex").textContent = building
    ? `Reindex running into ${building.collection} (${building.model_name}): ${building.points_copied} points re-embedded` +
      (building.runner ? ` by ${building.runner}` : " (waiting for the serving process to take it)") +
      (building.error ? ". Failed: " + building.error : "")
    : "No reindex running.";
  $("indexes").tBodies[0].replaceChildren(...system.indexes.map((i) =>
    el("tr", {}, el("td", { text: i.collection }), el("td", { text: i.model_name }),
      el("td", { text: i.dimension }), el("td", { text: i.state }), el("td", { text: i.points_copied }),
      el("td", { text: i.error || "" }))));
  const q = system.queue;
  const all = system.queue_all_tenants;
  $("queue").textContent = `This tenant: ${q.files_queued} files queued, ${q.files_running} being processed.` +
    (all ? ` All tenants: ${all.files_queued} queued, ${all.files_running} being processed.` : "");
  $("tenants-card").hidden = !system.operator;
  if (system.operator) {
    const page = await api("GET", "/v1/admin/tenants");
    $("tenants").tBodies[0].replaceChildren(...page.tenants.map((t) =>
      el("tr", { "data-tenant": t.name },
        el("td", { text: t.name }), el("td", { text: t.documents }), el("td", { text: bytes(t.stored_bytes) }),
        el("td", { text: t.limits.max_documents }), el("td", { text: bytes(t.limits.max_stored_bytes) }),
        el("td", { text: t.limits.queries_per_minute }), el("td", { text: when(t.created_at) }))));
  }
}

function initSystem() {
  $("system-refresh").addEventListener("click", () => loadSystem().catch(report));
  loadSystem().catch(report);
}

// ---- shell ------------------------------------------------------------------------------

function hasScope(scope) {
  return JSON.parse(sessionStorage.getItem(SCOPES) || "[]").includes(scope);
}

function init() {
  const page = document.body.dataset.page;
  if (page === "signin") {
    initSignIn();
    return;
  }
  if (!sessionStorage.getItem(KEY)) {
    // A page that signed out (a refused call: "revoked") may be left for another before the
    // browser reaches sign-in: that page keeps the reason instead of "Sign in first.".
    signOut(sessionStorage.getItem(REASON) || "Sign in first.");
    return;
  }
  $("nav").hidden = false;
  for (const node of document.querySelectorAll("[data-scope], [data-needs]")) {
    if (!hasScope(node.dataset.scope || node.dataset.needs)) node.hidden = true;
  }
  $("sign-out").addEventListener("click", () => signOut(""));
  const pages = { documents: initDocuments, document: initDocument, ask: initAsk, search: initSearch,
                  admin: initAdmin, system: initSystem };
  if (pages[page]) pages[page]();
}

document.addEventListener("DOMContentLoaded", init);
