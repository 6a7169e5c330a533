"""A sentence-transformers mean-pooling model exported once to ONNX for onnxruntime.

The graph holds the whole encoder: transformer, mean pooling over the attention mask and L2
normalisation, so one `run` returns the vectors sentence-transformers would. After the export,
onnxruntime's transformer optimiser fuses attention, the embedding layer norm, the skip layer
norms and GELU: on a 2-core AVX2 CPU that is what makes ONNX ~1.5x faster than PyTorch (the
unfused graph is barely faster, and the int8 export is slower without VNNI; bench/ingest_speed.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

# Bump when the exported graph changes, so that a cached file of an older recipe is not reused.
EXPORT_RECIPE = 1
# The export is checked against PyTorch before it is kept (a fusion bug must not reach an index).
MIN_EXPORT_COSINE = 0.999
_PROBES = (
    "Vacation days carry over to the next year.",
    "The Rotterdam warehouse shipped 1,204 parcels in March; the Lyon site shipped fewer.",
    "Regulatory T cells suppress autoimmunity " * 12,
)


class UnsupportedModelError(RuntimeError):
    pass


def exported_model_file(model_path: Path, cache_dir: Path) -> Path:
    """The ONNX file of a model folder, exported (and checked) on first use, then reused."""
    target = cache_dir / f"{model_path.name}-{_fingerprint(model_path)}.onnx"
    if target.is_file():
        return target
    _check_mean_pooling(model_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place: concurrent first starts (several worker
    # processes on one volume) each export and the last rename wins, never a partial file.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".export-") as work:
        raw = Path(work) / "raw.onnx"
        fused = Path(work) / "fused.onnx"
        _export(model_path, raw)
        _fuse(model_path, raw, fused)
        _check_against_torch(model_path, fused)
        os.replace(fused, target)
    return target


def _fingerprint(model_path: Path) -> str:
    """Weights, config and recipe (and the onnxruntime version, whose optimiser wrote it)."""
    import onnxruntime

    digest = hashlib.sha256(f"{EXPORT_RECIPE}:{onnxruntime.__version__}".encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin", "1_Pooling/config.json"):
        file = model_path / name
        if file.is_file():
            with file.open("rb") as data:
                digest.update(name.encode())
                for block in iter(lambda: data.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _check_mean_pooling(model_path: Path) -> None:
    pooling = model_path / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) if pooling.is_file() else {}
    modes = {key for key, value in config.items() if key.startswith("pooling_mode") and value}
    if modes != {"pooling_mode_mean_tokens"}:
        raise UnsupportedModelError(
            f"the ONNX backend exports mean-pooling models only ({model_path} pools with "
            f"{sorted(modes) or 'no config'}); set RAGKB_EMBEDDING__BACKEND=torch"
        )


def _export(model_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    # Eager attention exports as plain MatMul/Softmax, the pattern the optimiser fuses (the
    # SDPA export is left unfused).
    encoder = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    sample = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is the legacy one; it is the one whose graph
        # onnxruntime's BERT optimiser understands.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            MeanPooled(encoder),
            (sample, sample),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _fuse(model_path: Path, raw: Path, out: Path) -> None:
    from onnxruntime.transformers import optimizer

    config = json.loads((model_path / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise UnsupportedModelError(
            f"the ONNX backend fuses BERT encoders only ({model_path} is "
            f"{config.get('model_type')!r}); set RAGKB_EMBEDDING__BACKEND=torch"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            opt_level=1,
        )
    model.save_model_to_file(str(out))


def _check_against_torch(model_path: Path, onnx_file: Path) -> None:
    import numpy as np
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    reference = SentenceTransformer(str(model_path), device="cpu", local_files_only=True).encode(
        list(_PROBES), normalize_embeddings=True
    )
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    batch = tokenizer(list(_PROBES), padding=True, truncation=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    vectors = session.run(
        None,
        {
            "input_ids": batch["input_ids"].astype(np.int64),
            "attention_mask": batch["attention_mask"].astype(np.int64),
        },
    )[0]
    cosine = float(np.min(np.sum(np.asarray(vectors) * reference, axis=1)))
    if cosine < MIN_EXPORT_COSINE:
        raise UnsupportedModelError(
            f"the ONNX export of {model_path} differs from PyTorch (cosine {cosine:.4f}); "
            "set RAGKB_EMBEDDING__BACKEND=torch"
        )
