#!/usr/bin/env python3
"""Writes a Llama model folder with random bf16 weights for serving benchmarks (the KV handoff
between disaggregated workers needs a model whose cache is large enough to time; the text it
generates is meaningless). The shape is a small Llama-3-like one by default; the tokenizer is
copied from an existing folder (the SmolLM2 one of ../shared by default, vocab 49152).

    python3 tests/bench/make_random_llama.py --out /tmp/llama-0.5b \
        --tokenizer ../shared/tokenizers/smollm2-135m/tokenizer.json
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer", required=True, help="tokenizer.json to copy")
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--hidden", type=int, default=1536)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--kv_heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=4096)
    p.add_argument("--max_positions", type=int, default=32768 + 256)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    head_dim = a.hidden // a.heads
    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"

    def rand(*shape):
        return (torch.randn(*shape, device=dev) * 0.02).to(torch.bfloat16).cpu()

    t = {"model.embed_tokens.weight": rand(a.vocab, a.hidden),
         "model.norm.weight": torch.ones(a.hidden, dtype=torch.bfloat16),
         "lm_head.weight": rand(a.vocab, a.hidden)}
    for i in range(a.layers):
        pre = f"model.layers.{i}."
        t[pre + "input_layernorm.weight"] = torch.ones(a.hidden, dtype=torch.bfloat16)
        t[pre + "post_attention_layernorm.weight"] = torch.ones(a.hidden, dtype=torch.bfloat16)
        t[pre + "self_attn.q_proj.weight"] = rand(a.heads * head_dim, a.hidden)
        t[pre + "self_attn.k_proj.weight"] = rand(a.kv_heads * head_dim, a.hidden)
        t[pre + "self_attn.v_proj.weight"] = rand(a.kv_heads * head_dim, a.hidden)
        t[pre + "self_attn.o_proj.weight"] = rand(a.hidden, a.heads * head_dim)
        t[pre + "mlp.gate_proj.weight"] = rand(a.ffn, a.hidden)
        t[pre + "mlp.up_proj.weight"] = rand(a.ffn, a.hidden)
        t[pre + "mlp.down_proj.weight"] = rand(a.hidden, a.ffn)
    os.makedirs(a.out, exist_ok=True)
    save_file(t, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": a.vocab, "hidden_size": a.hidden, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "head_dim": head_dim, "intermediate_size": a.ffn, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "max_position_embeddings": a.max_positions,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "bfloat16"}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    n = sum(x.numel() for x in t.values())
    print(f"wrote {a.out}: {n / 1e6:.0f}M parameters, KV "
          f"{2 * a.layers * a.kv_heads * head_dim * 2 / 1024:.0f} KiB per token (bf16)")


if __name__ == "__main__":
    main()
