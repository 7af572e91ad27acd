#!/usr/bin/env python3
"""Trains tests/models/claa-retrieval: a small Llama whose attention really retrieves.

CLAA prunes prompt tokens by attention scores; judging that needs a model that answers
long-context retrieval questions by attending to the right tokens. This script trains one on
the RULER-style tasks of claa-ruler (the one source of the data: examples come from the
binary, token ids included, in the tokens of --tokenizer, so no Python tokenizer is involved)
and writes a Hugging Face LlamaForCausalLM checkpoint (bf16 safetensors), its tokenizer.json,
an evaluation on held-out examples and a log.

The model is written by hand with HF's weight names and maths (RMSNorm in fp32, rotate-half
RoPE, GQA by repeating KV heads), so the checkpoint loads in transformers and in our engine;
--hf_check loads the saved checkpoint with transformers and compares logits and accuracy.

Curriculum (why): retrieval is a sharp attention pattern that is learned far faster at short
contexts, where the needle gets ~1/T of the attention at initialization. So training starts
at 128-256 tokens and widens to 2048, the loss weights answer tokens fully and the rest of the
prompt lightly (the repeated-noise haystack still teaches copying), and batches hold one
length each, right-padded, so that plain causal attention (flash) needs no mask.

The committed checkpoint came from this, on one H100, after the subword tokenizer of
tests/models/make_retrieval_tokenizer.py (tests/models/claa-retrieval/README.md has the whole
call, and says how claa-ruler and its libraries were carried there):
  LD_LIBRARY_PATH=$PWD/.devcarry/ruler/lib python3 tests/models/train_retrieval.py \
      --ruler .devcarry/ruler/claa-ruler --tokenizer $OUT/tokenizer.json --out $OUT/model \
      --steps 12500 --warmup 300 --tokens_per_step 65536 --compile --deadline_s 480 \
      --dev_suite $OUT/dev_suite_ids.jsonl --hf_check
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _tokenizer_ids(path):
    """BOS, EOS and vocabulary size of a tokenizer.json (special tokens named as the built-in
    one's)."""
    with open(path) as f:
        tj = json.load(f)
    special = {t["content"]: t["id"] for t in tj["added_tokens"]}
    vocab = max(list(tj["model"]["vocab"].values()) + list(special.values())) + 1
    return special["<|begin_of_text|>"], special["<|end_of_text|>"], vocab


# --tokenizer travels to the spawned data workers through the environment (main re-executes
# itself with it set, so these globals agree in every process). Without it: the built-in
# byte-level tokenizer of claa-ruler (vocab 512).
TOKENIZER = os.environ.get("CLAA_RETRIEVAL_TOKENIZER", "")
BOS, EOS, VOCAB = _tokenizer_ids(TOKENIZER) if TOKENIZER else (510, 511, 512)
RULER_TOKENIZER_ARGS = ["--tokenizer", TOKENIZER] if TOKENIZER else []
ANSWER_ROOM = 64  # tokens after the prompt for the answer and EOS (longest: ~35)
TASKS = ["niah_single", "niah_multikey", "niah_multivalue", "kv_retrieval", "variable_tracking"]
# Training mix; the headline target is niah_single at 2k, and multikey teaches key matching.
TASK_WEIGHTS = {"niah_single": 0.35, "niah_multikey": 0.2, "niah_multivalue": 0.15,
                "kv_retrieval": 0.15, "variable_tracking": 0.15}
# Shortest target at which each task's fixed text fits (claa-ruler refuses shorter ones).
# With a margin: the fixed text's length varies with the random keys (25,000 seeds checked).
TASK_MIN_TARGET = {"niah_single": 128, "niah_multikey": 320, "niah_multivalue": 320,
                   "kv_retrieval": 128, "variable_tracking": 256}
# (end of phase as a fraction of the steps, targets drawn uniformly in that phase).
PHASES = [(0.10, [128, 192, 256]),
          (0.25, [256, 384, 512]),
          (0.45, [512, 768, 1024]),
          (0.65, [1024, 1536, 2048]),
          (1.00, [512, 1024, 1536, 2048, 2048, 2048])]
TRAIN_SUITE_SEED = 10_000_000  # + target * 1000 + job: disjoint from the eval seeds below
EVAL_SEED = 777
DEV_SUITE_SEED = 2026


def log(msg, fh=None):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if fh is not None:
        fh.write(line + "\n")
        fh.flush()


# ----------------------------------------------------------------------------- model

class Config:
    def __init__(self, **kw):
        self.vocab_size = VOCAB
        self.hidden_size = 256
        self.num_hidden_layers = 8
        self.num_attention_heads = 8
        self.num_key_value_heads = 4
        self.head_dim = 32
        self.intermediate_size = 768
        self.rope_theta = 10000.0
        self.max_position_embeddings = 4096
        self.rms_norm_eps = 1e-5
        self.__dict__.update(kw)

    def hf_json(self):
        return {
            "architectures": ["LlamaForCausalLM"], "attention_bias": False,
            "attention_dropout": 0.0, "bos_token_id": BOS, "eos_token_id": EOS,
            "dtype": "bfloat16", "head_dim": self.head_dim, "hidden_act": "silu",
            "hidden_size": self.hidden_size, "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings, "mlp_bias": False,
            "model_type": "llama", "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads, "pad_token_id": None,
            "pretraining_tp": 1, "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            "rope_theta": self.rope_theta, "tie_word_embeddings": False, "use_cache": True,
            "vocab_size": self.vocab_size,
        }


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):  # as HF LlamaRMSNorm: normalize in fp32, scale in the input dtype
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(cfg, length, device):
    inv_freq = 1.0 / (cfg.rope_theta ** (
        torch.arange(0, cfg.head_dim, 2, dtype=torch.int64, device=device).float() / cfg.head_dim))
    t = torch.arange(length, device=device).float()
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def causal_attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]  # old torch (CPU smoke tests here): the same maths by hand
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.float().masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1).to(v.dtype) @ v


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h, self.kv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv  # query head i reads KV head i // rep, as HF's repeat_kv
        o = causal_attention(q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1))
        # q and k after RoPE (k per KV head) go back too: the attention-distillation loss reads
        # them.
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.h * self.d)), q, k


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        a, q, k = self.self_attn(self.input_layernorm(x), cos, sin)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), q, k


class Inner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Llama(nn.Module):
    """LlamaForCausalLM's parameter names: model.embed_tokens, model.layers.N..., lm_head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # Residual-branch outputs scaled down with depth (GPT-2 style) for stable starts.
                s = std / math.sqrt(2 * cfg.num_hidden_layers) if name.endswith(
                    ("o_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, mean=0.0, std=s)

    def forward(self, ids, with_hidden=False, with_qk=False):
        """logits, plus (if asked) the list of every layer's output but the last (early-exit
        losses) and every layer's post-RoPE queries and keys (attention distillation)."""
        cos, sin = rope_tables(self.cfg, ids.shape[1], ids.device)
        x = self.model.embed_tokens(ids)
        hidden, qk = [], []
        for layer in self.model.layers:
            x, q, k = layer(x, cos, sin)
            if with_hidden:
                hidden.append(x)
            if with_qk:
                qk.append((q, k))
        logits = self.lm_head(self.model.norm(x))
        if not (with_hidden or with_qk):
            return logits
        return logits, hidden[:-1], qk


# ----------------------------------------------------------------------------- checkpoint

def save_safetensors_bf16(model, path):
    """Writes the safetensors format by hand (8-byte header size, JSON header, raw data), so
    the script needs no safetensors package."""
    tensors = {n: p.detach().to(torch.bfloat16).contiguous().cpu()
               for n, p in model.state_dict().items()}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        data = tensors[name].view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_safetensors_(model, path):
    """Loads a checkpoint written by save_safetensors_bf16 (to continue training)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    state = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        raw = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.int16).copy())
        state[name] = raw.view(torch.bfloat16).float().reshape(meta["shape"])
    model.load_state_dict(state)


def round_to_bf16_(model):
    """What the committed checkpoint holds: evaluate exactly that."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


# ----------------------------------------------------------------------------- data

def ruler_lines(ruler, task, target, num, seed, haystacks="noise,salad", extra=()):
    cmd = [ruler, "--tasks", task, "--haystacks", haystacks, "--lengths", str(target),
           "--num", str(num), "--seed", str(seed), "--with_ids", *RULER_TOKENIZER_ARGS, *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line]


def pack(examples, seq_len):
    """ids [n, seq_len] int16 (EOS-padded) and role [n, seq_len] uint8 of each position as a
    TARGET: 0 pad/BOS, 1 prompt, 2 answer or its EOS."""
    ids = np.full((len(examples), seq_len), EOS, dtype=np.int16)
    role = np.zeros((len(examples), seq_len), dtype=np.uint8)
    for i, ex in enumerate(examples):
        p, a = ex["prompt_ids"], ex["answer_ids"] + [EOS]
        assert len(p) + len(a) <= seq_len, (len(p), len(a), seq_len)
        ids[i, :len(p)] = p
        ids[i, len(p):len(p) + len(a)] = a
        role[i, 1:len(p)] = 1
        role[i, len(p):len(p) + len(a)] = 2
    return ids, role


def make_job(ruler, target, job, counts, out_dir):
    """One shard: every task's share for one target, shuffled together (runs in a worker)."""
    examples = []
    seed = TRAIN_SUITE_SEED + target * 1000 + job
    for task, n in counts.items():
        if n <= 0:
            continue
        try:
            if task == "kv_retrieval":
                examples += ruler_lines(ruler, task, target, n, seed)
            else:  # one per haystack per index
                examples += ruler_lines(ruler, task, target, (n + 1) // 2, seed)
        except subprocess.CalledProcessError as e:
            # A rare draw whose fixed text does not fit the target: keep the shard's size.
            print(f"shard t{target} j{job} {task}: {e.stderr.strip()}; using niah_single",
                  flush=True)
            examples += ruler_lines(ruler, "niah_single", target, (n + 1) // 2, seed + 500)
    random.Random(seed).shuffle(examples)
    ids, role = pack(examples, target + ANSWER_ROOM)
    path = os.path.join(out_dir, f"t{target}_j{job}.npz")
    np.savez(path, ids=ids, role=role)
    return path


def plan_steps(steps, tokens_per_step, seed, curriculum="full", targets=None):
    """(target length, batch size) of every step. curriculum "full" widens the contexts from
    128 to 2048 (PHASES); "final" draws every step from the last phase's mix (for continued
    training of a model that has been through the curriculum already); a list of targets
    overrides both (short continued trainings where no GPU is at hand)."""
    rng = random.Random(seed)
    plan = []
    for s in range(steps):
        f = s / steps if curriculum == "full" else 1.0
        ts = targets or next(ts for end, ts in PHASES if f < end or end == 1.0)
        target = rng.choice(ts)
        plan.append((target, max(1, tokens_per_step // (target + ANSWER_ROOM))))
    return plan


def task_counts(target, n):
    w = {t: (TASK_WEIGHTS[t] if target >= TASK_MIN_TARGET[t] else 0.0) for t in TASKS}
    total = sum(w.values())
    return {t: int(math.ceil(n * w[t] / total)) for t in TASKS}


class DataPipeline:
    """Generates every shard the step plan needs in worker processes, shortest phase first,
    and serves batches of one target length in plan order."""

    def __init__(self, ruler, plan, workers, out_dir, job_size):
        need = {}
        needed_at = {}  # target -> step at which each job's first example is consumed
        for i, (target, b) in enumerate(plan):
            before = need.get(target, 0)
            need[target] = before + b
            for j in range(before // job_size, (before + b - 1) // job_size + 1):
                needed_at.setdefault(target, {}).setdefault(j, i)
        self.pending = {t: [] for t in need}
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        jobs = []
        for target, n in need.items():
            n = int(n * 1.02) + 8  # counts round per task; a little spare
            for j in range(0, math.ceil(n / job_size)):
                jobs.append((needed_at[target].get(j, len(plan)), target, j,
                             task_counts(target, min(job_size, n - j * job_size))))
        jobs.sort()  # in the order training needs them
        for _, target, j, counts in jobs:
            self.pending[target].append(
                self.pool.submit(make_job, ruler, target, j, counts, out_dir))
        self.ids = {t: np.zeros((0, t + ANSWER_ROOM), np.int16) for t in need}
        self.role = {t: np.zeros((0, t + ANSWER_ROOM), np.uint8) for t in need}
        self.cursor = {t: 0 for t in need}
        self.wrapped = 0
        self.wait_s = 0.0

    def batch(self, target, b):
        while len(self.ids[target]) - self.cursor[target] < b and self.pending[target]:
            t0 = time.time()
            path = self.pending[target].pop(0).result()
            self.wait_s += time.time() - t0
            z = np.load(path)
            os.remove(path)
            self.ids[target] = np.concatenate([self.ids[target][self.cursor[target]:], z["ids"]])
            self.role[target] = np.concatenate([self.role[target][self.cursor[target]:], z["role"]])
            self.cursor[target] = 0
        if len(self.ids[target]) - self.cursor[target] < b:  # should not happen: plan-sized
            self.cursor[target] = 0
            self.wrapped += 1
        c = self.cursor[target]
        self.cursor[target] += b
        return (torch.from_numpy(self.ids[target][c:c + b].astype(np.int64)),
                torch.from_numpy(self.role[target][c:c + b]))


# ----------------------------------------------------------------------------- evaluation

def load_token_strings(tokenizer_json):
    """id -> bytes for the byte-level BPE tokenizer (GPT-2 byte-to-unicode alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    decoder = {chr(c): b for b, c in zip(bs, cs)}
    with open(tokenizer_json) as f:
        tj = json.load(f)
    table = {}
    for tok, i in tj["model"]["vocab"].items():
        table[i] = bytes(decoder[ch] for ch in tok)
    for added in tj["added_tokens"]:
        table[added["id"]] = added["content"].encode()
    return table


def decode(table, ids):
    out = []
    for i in ids:
        if i == EOS:
            break
        out.append(table.get(i, b"?"))
    return b"".join(out).decode("utf-8", errors="replace")


@torch.no_grad()
def greedy(forward, prompts, max_new, device, batch_size):
    """Greedy continuations of right-padded prompts: causal attention means the padding after
    a prompt never reaches its own positions, so no mask is needed (no KV cache either: the
    answers are short)."""
    outs = []
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s:s + batch_size]
        lens = torch.tensor([len(p) for p in chunk], device=device)
        buf = torch.full((len(chunk), max(lens).item() + max_new), EOS, dtype=torch.long,
                         device=device)
        for i, p in enumerate(chunk):
            buf[i, :len(p)] = torch.tensor(p, device=device)
        rows = torch.arange(len(chunk), device=device)
        for step in range(max_new):
            logits = forward(buf[:, :lens.max().item() + step])
            nxt = logits[rows, lens + step - 1].float().argmax(-1)
            buf[rows, lens + step] = nxt
        for i in range(len(chunk)):
            outs.append(buf[i, lens[i]:lens[i] + max_new].tolist())
    return outs


def evaluate(forward, examples, table, device, batch_size):
    """Exact match of the greedy text (up to EOS, stripped) with `answer`, and RULER's
    part score (fraction of `answers` contained in the output)."""
    max_new = max(len(e["answer_ids"]) for e in examples) + 2
    outs = greedy(forward, [e["prompt_ids"] for e in examples], max_new, device, batch_size)
    exact, part, samples = 0, 0.0, []
    for e, o in zip(examples, outs):
        text = decode(table, o).strip()
        exact += text == e["answer"]
        part += sum(a in text for a in e["answers"]) / len(e["answers"])
        if len(samples) < 2:
            samples.append({"answer": e["answer"], "got": text})
    n = len(examples)
    return {"n": n, "exact": exact / n, "part": part / n, "samples": samples}


def eval_suite(ruler, lengths, n_per, n_headline, seed):
    """Held-out examples: a suite seed no training shard uses."""
    cells = []
    for task in TASKS:
        for target in lengths:
            n = n_headline if (task == "niah_single" and target == max(lengths)) else n_per
            if task == "kv_retrieval":
                cells.append((task, "kv_pairs", target,
                              ruler_lines(ruler, task, target, n, seed)))
            else:
                for hay in ("noise", "salad"):
                    cells.append((task, hay, target,
                                  ruler_lines(ruler, task, target, n, seed, haystacks=hay)))
    return cells


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ruler", required=True, help="path of the claa-ruler binary")
    ap.add_argument("--tokenizer", default="",
                    help="tokenizer.json of the model (tests/models/make_retrieval_tokenizer.py); "
                         "empty: claa-ruler's built-in byte-level one")
    ap.add_argument("--out", required=True, help="output folder (checkpoint, logs)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=3600)
    ap.add_argument("--tokens_per_step", type=int, default=65536)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--weight_decay", type=float, default=0.1)
    ap.add_argument("--prompt_loss_weight", type=float, default=0.1,
                    help="weight of the prompt tokens' LM loss next to the answer loss (1.0)")
    ap.add_argument("--workers", type=int, default=12, help="data-generation processes")
    ap.add_argument("--job_size", type=int, default=3000, help="examples per data shard")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training model")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="bf16 autocast for training")
    ap.add_argument("--log_every", type=int, default=100, help="steps between log lines")
    ap.add_argument("--deadline_s", type=float, default=1e9,
                    help="stop training this many seconds after start, whatever the plan")
    ap.add_argument("--eval_lengths", default="512,1024,2048")
    ap.add_argument("--eval_n", type=int, default=40, help="examples per eval cell")
    ap.add_argument("--eval_headline_n", type=int, default=100,
                    help="niah_single examples per haystack at the longest eval length")
    ap.add_argument("--eval_batch", type=int, default=64)
    ap.add_argument("--dev_suite", default="", help="JSONL made by claa-ruler to score too")
    ap.add_argument("--hf_check", action="store_true",
                    help="reload the checkpoint with transformers and compare")
    shape = Config()  # the committed model's shape is the default
    ap.add_argument("--layers", type=int, default=shape.num_hidden_layers, help="decoder layers")
    ap.add_argument("--hidden", type=int, default=shape.hidden_size, help="hidden size")
    ap.add_argument("--heads", type=int, default=shape.num_attention_heads,
                    help="attention heads (head dim = hidden / heads)")
    ap.add_argument("--kv_heads", type=int, default=shape.num_key_value_heads,
                    help="key/value heads (GQA)")
    ap.add_argument("--ffn", type=int, default=shape.intermediate_size,
                    help="MLP intermediate size")
    ap.add_argument("--early_exit_weight", type=float, default=0.0,
                    help="weight of the early-exit answer loss over the layers (0: off)")
    ap.add_argument("--mid_exit_weight", type=float, default=0.0,
                    help="weight of the half-depth answer loss (a training-only head on the "
                         "output of layer --mid_exit_layer; 0: off)")
    ap.add_argument("--mid_bag_weight", type=float, default=0.0,
                    help="weight of the half-depth answer-set loss: the half-depth head, read at "
                         "the last prompt token, is asked for every answer token (0: off)")
    ap.add_argument("--mid_exit_layer", type=int, default=-1,
                    help="layer whose output the half-depth head reads (-1: layers / 2 - 1)")
    ap.add_argument("--attn_distill_weight", type=float, default=0.0,
                    help="weight of the attention-distillation loss: one KV head of each "
                         "--attn_distill_layers layer learns to look, from the prompt's last "
                         "--attn_distill_window tokens, where the later layers read the answer "
                         "from (0: off)")
    ap.add_argument("--attn_distill_layers", default="",
                    help="comma-separated layers for --attn_distill_weight (default: "
                         "--mid_exit_layer's default, layers / 2 - 1)")
    ap.add_argument("--attn_distill_window", type=int, default=8,
                    help="prompt positions whose attention --attn_distill_weight trains "
                         "(CLAA's and FastKV's query window)")
    ap.add_argument("--attn_distill_margin", type=int, default=24,
                    help="prompt tokens before the window that --attn_distill_weight leaves out "
                         "(the question)")
    ap.add_argument("--curriculum", choices=["full", "final"], default="full",
                    help="full: contexts widen from 128 to 2048 tokens; final: only the last "
                         "phase's mix of 512-2048 (continued training)")
    ap.add_argument("--targets", default="",
                    help="comma-separated prompt lengths to draw every step from (overrides "
                         "--curriculum)")
    ap.add_argument("--task_weights", default="",
                    help="task=weight,... overriding the training mix (TASK_WEIGHTS) for the named "
                         "tasks")
    ap.add_argument("--init_from", default="",
                    help="model.safetensors to start from (continued training)")
    ap.add_argument("--profile_only", action="store_true",
                    help="time training steps per length (eager and compiled) and stop")
    args = ap.parse_args()
    if args.tokenizer and os.path.abspath(args.tokenizer) != TOKENIZER:
        os.environ["CLAA_RETRIEVAL_TOKENIZER"] = os.path.abspath(args.tokenizer)
        os.execv(sys.executable, [sys.executable] + sys.argv)

    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train_log.txt"), "w")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"torch {torch.__version__} device {device} "
        f"{torch.cuda.get_device_name() if device == 'cuda' else ''} args {vars(args)}", logf)

    if args.hidden % args.heads or args.heads % args.kv_heads:
        sys.exit("--hidden must be a multiple of --heads, and --heads of --kv_heads")
    use_mid = args.mid_exit_weight > 0 or args.mid_bag_weight > 0
    if (args.early_exit_weight > 0 or use_mid) and args.layers < 2:
        sys.exit("--early_exit_weight and --mid_exit_weight need at least 2 layers")
    if args.mid_exit_layer < 0:
        args.mid_exit_layer = args.layers // 2 - 1
    if args.mid_exit_layer >= args.layers - 1:
        sys.exit("--mid_exit_layer must be below the last layer")
    distill_layers = ([int(x) for x in args.attn_distill_layers.split(",")]
                      if args.attn_distill_layers else [args.layers // 2 - 1])
    if any(not 0 <= x < args.layers - 1 for x in distill_layers):
        sys.exit("--attn_distill_layers must name layers of the model below the last (the "
                 "target is read from the layers after them)")
    for item in filter(None, args.task_weights.split(",")):
        name, _, w = item.partition("=")
        if name not in TASK_WEIGHTS or not w:
            sys.exit(f"--task_weights: want task=weight with a task of {TASKS}, got {item!r}")
        TASK_WEIGHTS[name] = float(w)  # read by task_counts in this process only
    data_dir = os.path.join("/tmp", f"claa_retrieval_data_{os.getpid()}")
    os.makedirs(data_dir, exist_ok=True)
    plan = plan_steps(args.steps, args.tokens_per_step, args.seed, args.curriculum,
                      [int(x) for x in args.targets.split(",")] if args.targets else None)
    pipeline = DataPipeline(args.ruler, plan, args.workers, data_dir, args.job_size)
    log(f"plan: {len(plan)} steps, {sum(b for _, b in plan)} examples, "
        f"{sum(b * (t + ANSWER_ROOM) for t, b in plan) / 1e6:.1f}M tokens", logf)

    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = Config(num_hidden_layers=args.layers, hidden_size=args.hidden,
                 num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                 head_dim=args.hidden // args.heads, intermediate_size=args.ffn)
    model = Llama(cfg).to(device)
    if args.init_from:
        load_safetensors_(model, args.init_from)
        log(f"initialized from {args.init_from}", logf)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.3f}M parameters", logf)

    # Half-depth exit head: an RMSNorm and a linear read-out of its own, trained next to the
    # model and never saved (the checkpoint stays a plain Llama). Why: large LLMs have found
    # the tokens a question needs by their middle layers, which is what prefill pruning at half
    # depth (the paper's layer 15 of 32) relies on; a small model trained on these tasks alone
    # retrieves as late as it can (docs/pruning-eval.md). Asking the half-depth output to name
    # the answer too makes the first half retrieve; a separate head (unlike LayerSkip's shared
    # one) leaves the residual stream free to keep its own format for the later layers.
    mid_head = None
    if use_mid:
        mid_head = nn.Sequential(RMSNorm(cfg.hidden_size, cfg.rms_norm_eps),
                                 nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)).to(device)
        with torch.no_grad():  # start from the model's own read-out
            mid_head[0].weight.copy_(model.model.norm.weight)
            mid_head[1].weight.copy_(model.lm_head.weight)
        log(f"half-depth exit after layer {args.mid_exit_layer}, weight {args.mid_exit_weight}, "
            f"answer-set weight {args.mid_bag_weight}", logf)
    trained = list(model.named_parameters()) + (
        [("mid_head." + n, p) for n, p in mid_head.named_parameters()] if mid_head else [])
    decay = [p for n, p in trained if p.dim() == 2 and "embed" not in n]
    no_decay = [p for n, p in trained if not (p.dim() == 2 and "embed" not in n)]
    opt_kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    try:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                fused=(device == "cuda"), **opt_kw)
    except TypeError:  # old torch
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], **opt_kw)

    train_forward = model
    if args.compile:
        train_forward = torch.compile(model, dynamic=True)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        f = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, f))))

    def train_step(ids, role, step):
        ids = ids.to(device, non_blocking=True)
        role = role.to(device, non_blocking=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        early = args.early_exit_weight > 0 or mid_head is not None
        distill = args.attn_distill_weight > 0
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.bf16):
            out = train_forward(ids[:, :-1], with_hidden=early, with_qk=distill)
            logits, hidden, qk = out if (early or distill) else (out, None, None)
        ce = F.cross_entropy(logits.float().reshape(-1, VOCAB), ids[:, 1:].reshape(-1),
                             reduction="none").view(ids.shape[0], -1)
        r = role[:, 1:]
        ans_mask, prm_mask = (r == 2).float(), (r == 1).float()
        ans = (ce * ans_mask).sum() / ans_mask.sum().clamp(min=1)
        prm = (ce * prm_mask).sum() / prm_mask.sum().clamp(min=1)
        loss = ans + args.prompt_loss_weight * prm
        mid_hit = torch.zeros((), device=device)
        if args.early_exit_weight > 0:
            loss = loss + args.early_exit_weight * early_exit_loss(hidden, r == 2, ids[:, 1:])
        if mid_head is not None:
            h_mid = hidden[args.mid_exit_layer]
            mid_ce, mid_hit = mid_exit_loss(h_mid, r == 2, ids[:, 1:])
            loss = loss + args.mid_exit_weight * mid_ce
            if args.mid_bag_weight > 0:
                loss = loss + args.mid_bag_weight * mid_bag_loss(h_mid, r == 2, ids[:, 1:])
        dist_kl = torch.zeros((), device=device)
        if distill:
            dist_kl = attn_distill_loss(qk, r == 2)
            loss = loss + args.attn_distill_weight * dist_kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_([p for _, p in trained], 1.0)
        opt.step()
        # Token accuracy on answers: a cheap running view of retrieval being learned.
        with torch.no_grad():
            hit = ((logits.argmax(-1) == ids[:, 1:]).float() * ans_mask).sum() / ans_mask.sum()
        return ans, prm, gn, hit, mid_hit, dist_kl.detach()

    # Early-exit loss (as LayerSkip, Elhoushi et al. 2024): every layer's output, through the
    # final norm and lm_head, is also asked for the answer tokens, weighted up with depth
    # ((l + 1) / sum). Why: trained on these tasks alone, a small model puts its one global
    # retrieval hop in its last layer (nothing after it needs the retrieved value), while large
    # LLMs retrieve in their middle layers, which is what every prefill-pruning method (CLAA,
    # FastKV, GemFilter alike) relies on. The loss asks each layer to know the answer as early
    # as it can; it names no layer and no pruning method.
    n_early = cfg.num_hidden_layers - 1
    early_w = torch.arange(1, n_early + 1, dtype=torch.float32, device=device)
    early_w = early_w / early_w.sum()

    def early_exit_loss(hidden, ans_pos, targets):
        h = torch.stack([x[ans_pos] for x in hidden])  # [layers - 1, answer tokens, hidden]
        if h.shape[1] == 0:
            return h.sum() * 0.0
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.bf16):
            lg = model.lm_head(model.model.norm(h))
        t = targets[ans_pos].expand(h.shape[0], -1)
        ce = F.cross_entropy(lg.float().reshape(-1, VOCAB), t.reshape(-1),
                             reduction="none").view(h.shape[0], -1).mean(1)
        return (ce * early_w).sum()

    def mid_exit_loss(h, ans_pos, targets):
        """CE and token accuracy of the half-depth head on the answer tokens."""
        h = h[ans_pos]
        if h.shape[0] == 0:
            return h.sum() * 0.0, torch.zeros((), device=device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.bf16):
            lg = mid_head(h)
        t = targets[ans_pos]
        return F.cross_entropy(lg.float(), t), (lg.argmax(-1) == t).float().mean().detach()

    def mid_bag_loss(h, ans_pos, targets):
        """The answer as a set, asked of the half-depth head at the last prompt token: the mean
        CE of each answer token (EOS aside) under that one distribution. Next-token training
        only needs the first answer token there; a multi-token answer (an 8-digit hex value is
        about 5 tokens) then gets its later tokens' attention only from the answer positions.
        Asking for all of them makes the prompt's last position read the whole span, as a
        large model's last prompt token does (it plans the answer)."""
        has = ans_pos.any(1)
        first = ans_pos.float().argmax(1)  # index of the last prompt token (target: answer 1)
        rows = torch.arange(h.shape[0], device=h.device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.bf16):
            z = mid_head(h[rows, first])
        logp = F.log_softmax(z.float(), dim=-1).gather(1, targets)  # [batch, positions]
        m = (ans_pos & (targets != EOS)).float()
        per_row = -(logp * m).sum(1) / m.sum(1).clamp(min=1)
        return (per_row * has.float()).sum() / has.float().sum().clamp(min=1)

    if args.attn_distill_weight > 0:
        log(f"attention distillation into layers {distill_layers}, window "
            f"{args.attn_distill_window}, weight {args.attn_distill_weight}", logf)

    def attn_distill_loss(qk, ans_pos):
        """Asks one KV head of each --attn_distill_layers layer to look, from the prompt's last
        --attn_distill_window positions, where the answer will be read from. Target (no
        gradient): the answer positions' attention summed over the heads of every layer after
        the distilled ones (where this model reads the answer), mean over the answer's
        positions. Student: that head group's window attention summed over its queries and query
        heads, as the SnapKV-style score is made. Both are restricted to the far prefix (no BOS,
        nothing in the last window + --attn_distill_margin prompt tokens: the question, which
        every head reads locally anyway and which would otherwise be most of the target) and
        renormalized there. Loss: the KL divergence of the student from the target for the KV
        head that matches best (the minimum over KV heads), so one head per layer specializes
        and the others keep their jobs.
        Why: large LLMs' middle layers already attend where the answer is (the property every
        prefill-pruning method relies on and the paper measures); a small model trained on these
        tasks alone matches the key by half depth but reads the value only later."""
        has = ans_pos.any(1)
        if not bool(has.any()):
            return qk[0][0].sum() * 0.0
        q0, k0 = qk[0]
        b, h, t, d = q0.shape
        rep = h // k0.shape[1]
        win = args.attn_distill_window
        rows = torch.arange(b, device=q0.device)
        first = ans_pos.float().argmax(1)  # the last prompt token (its target: answer token 1)
        n_ans = int(ans_pos.sum(1).max())
        qpos = (first[:, None] + torch.arange(n_ans, device=q0.device)).clamp(max=t - 1)
        qmask = ans_pos.gather(1, qpos) & has[:, None]  # [b, n_ans]
        keys = torch.arange(t, device=q0.device)
        far = (keys[None] >= 1) & (keys[None] <= (first - win - args.attn_distill_margin)[:, None])
        scale = 1.0 / math.sqrt(d)

        def probs(q, k, pos):  # q [b, h, n, d] at positions pos [b, n]; k [b, kv, t, d]
            s = (q.float() @ k.float().repeat_interleave(rep, dim=1).transpose(-1, -2)) * scale
            s = s.masked_fill(keys[None, None, None] > pos[:, None, :, None], float("-inf"))
            return torch.softmax(s, dim=-1)  # [b, h, n, t]

        with torch.no_grad():
            tgt = 0
            for q, k in qk[max(distill_layers) + 1:]:
                tgt = tgt + probs(q[rows[:, None], :, qpos].transpose(1, 2), k, qpos).sum(1)
            tgt = (tgt * qmask[..., None]).sum(1) * far  # [b, t]
            has = has & (tgt.sum(1) > 0)
            tgt = tgt / tgt.sum(1, keepdim=True).clamp(min=1e-12)
        wpos = (first - win + 1)[:, None] + torch.arange(win, device=q0.device)
        wpos = wpos.clamp(min=0)
        total = q0.new_zeros((), dtype=torch.float32)
        for layer in distill_layers:
            q, k = qk[layer]
            p = probs(q[rows[:, None], :, wpos].transpose(1, 2), k, wpos).sum(2)  # [b, h, t]
            p = p.view(b, -1, rep, t).sum(2) * far[:, None]  # [b, kv, t]
            p = p / p.sum(-1, keepdim=True).clamp(min=1e-12)
            kl = (tgt[:, None] * (torch.log(tgt[:, None] + 1e-9) - torch.log(p + 1e-9))).sum(-1)
            total = total + (kl.min(1).values * has.float()).sum() / has.float().sum().clamp(min=1)
        return total / len(distill_layers)

    if args.profile_only:
        for target in (192, 512, 1024, 2048):
            b = max(1, args.tokens_per_step // (target + ANSWER_ROOM))
            ids, role = pipeline.batch(target, b) if target in pipeline.ids else (None, None)
            if ids is None:
                ids = torch.randint(0, 256, (b, target + ANSWER_ROOM))
                role = torch.ones_like(ids, dtype=torch.uint8)
            for k in range(8):
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.time()
                train_step(ids, role, 0)
                if device == "cuda":
                    torch.cuda.synchronize()
                dt = time.time() - t0
                if k in (0, 7):
                    log(f"profile target {target} batch {b} step {k}: {dt * 1000:.1f} ms "
                        f"({b * (target + ANSWER_ROOM) / dt / 1e3:.0f}k tok/s)", logf)
        pipeline.pool.shutdown(cancel_futures=True)
        return

    log(f"setup done at {time.time() - t_start:.1f}s", logf)
    t_train = time.time()
    stats = []
    tokens = 0
    step = 0
    for step, (target, b) in enumerate(plan):
        if time.time() - t_start > args.deadline_s:
            log(f"deadline reached at step {step}: stopping training early", logf)
            break
        ids, role = pipeline.batch(target, b)
        ans, prm, gn, hit, mid_hit, dist_kl = train_step(ids, role, step)
        tokens += ids.numel()
        stats.append((ans, prm, hit, mid_hit, dist_kl))
        if step % args.log_every == 0 or step == len(plan) - 1:
            a, p, h, mh, dc = torch.stack([torch.stack(s) for s in stats]).mean(0).tolist()
            stats = []
            el = time.time() - t_train
            log(f"step {step} target {target} b {b} lr {lr_at(step):.2e} ans_loss {a:.4f} "
                f"prompt_loss {p:.4f} ans_tok_acc {h:.3f} "
                f"{f'mid_acc {mh:.3f} ' if mid_head is not None else ''}"
                f"{f'distill_kl {dc:.3f} ' if args.attn_distill_weight > 0 else ''}"
                f"gnorm {gn.item():.2f} "
                f"tok/s {tokens / el / 1e3:.0f}k elapsed {el:.0f}s data_wait {pipeline.wait_s:.1f}s",
                logf)
    steps_done = step + 1
    train_s = time.time() - t_train
    log(f"trained {steps_done} steps, {tokens / 1e6:.1f}M tokens in {train_s:.0f}s "
        f"(data wraps {pipeline.wrapped})", logf)
    pipeline.pool.shutdown(cancel_futures=True)

    # Checkpoint first, then evaluate exactly what was saved.
    model.eval()
    round_to_bf16_(model)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg.hf_json(), f, indent=2)
    save_safetensors_bf16(model, os.path.join(args.out, "model.safetensors"))
    tok_path = os.path.join(args.out, "tokenizer.json")
    if TOKENIZER:
        shutil.copy(TOKENIZER, tok_path)
    else:
        subprocess.run([args.ruler, "--write_tokenizer", tok_path], check=True)
    log(f"saved checkpoint ({os.path.getsize(os.path.join(args.out, 'model.safetensors'))} bytes)",
        logf)

    # Plain fp32 matrix products for evaluation: the engine computes in fp32 too.
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    table = load_token_strings(tok_path)
    fp32_forward = lambda x: model(x)  # noqa: E731  (weights already bf16-rounded)
    results = {"steps": steps_done, "train_tokens": tokens, "train_seconds": train_s,
               "params": n_params, "seed": args.seed, "eval_seed": EVAL_SEED, "cells": []}
    t_eval = time.time()
    lengths = [int(x) for x in args.eval_lengths.split(",")]
    for task, hay, target, exs in eval_suite(args.ruler, lengths, args.eval_n,
                                             args.eval_headline_n, EVAL_SEED):
        r = evaluate(fp32_forward, exs, table, device,
                     max(1, args.eval_batch * 2048 // max(target, 512)))
        r.update(task=task, haystack=hay, length=target)
        results["cells"].append(r)
        log(f"eval {task:18s} {hay:8s} {target:5d}: exact {r['exact']:.3f} part {r['part']:.3f} "
            f"(n={r['n']}) e.g. {r['samples'][0]}", logf)
    if args.dev_suite:
        with open(args.dev_suite) as f:
            dev = [json.loads(line) for line in f if line.strip()]
        groups = {}
        for e in dev:
            groups.setdefault((e["task"], e["prompt_tokens"] > 1024), []).append(e)
        results["dev_suite"] = []
        for (task, long_), exs in sorted(groups.items()):
            r = evaluate(fp32_forward, exs, table, device, 32)
            r.update(task=task, long=long_)
            results["dev_suite"].append(r)
            log(f"dev   {task:18s} {'2048' if long_ else '512':>5s}: exact {r['exact']:.3f} "
                f"part {r['part']:.3f} (n={r['n']})", logf)
    log(f"eval took {time.time() - t_eval:.0f}s", logf)

    if args.hf_check:
        hf_check(args, model, results, table, device, logf)
    results["total_seconds"] = time.time() - t_start
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump(results, f, indent=1)
    log(f"done in {time.time() - t_start:.0f}s", logf)


def hf_check(args, model, results, table, device, logf):
    """The committed files must load in transformers and behave as the trained model."""
    try:
        from transformers import LlamaForCausalLM
    except ImportError as e:
        log(f"hf_check skipped: {e}", logf)
        return
    hf = LlamaForCausalLM.from_pretrained(args.out, torch_dtype=torch.float32).to(device).eval()
    exs = ruler_lines(args.ruler, "niah_single", 2048, 25, EVAL_SEED + 1)
    x = torch.tensor([exs[0]["prompt_ids"]], device=device)
    with torch.no_grad():
        ref = hf(x).logits.float()
        mine = model(x).float()
    diff = (ref - mine).abs().max().item()
    r = evaluate(lambda ids: hf(ids).logits, exs, table, device, 16)
    results["hf_check"] = {"max_abs_logit_diff": diff, "niah_single_2048": r}
    log(f"hf_check: max |logit diff| {diff:.2e}; transformers niah_single@2048 exact "
        f"{r['exact']:.3f} (n={r['n']})", logf)


if __name__ == "__main__":
    main()
