#!/usr/bin/env python3
"""Makes the subword tokenizer of tests/models/claa-retrieval: a byte-level BPE like the
engine's built-in tokenizer (same pre-tokenizer, BOS/EOS and template), with its merges learned
on claa-ruler text, so that a token holds a few characters as in a large model's tokenizer.

Why (docs/pruning-eval.md): CLAA's settings (an 8-token query window, pooling kernels of 7 and
13 tokens) are counted in Llama-3 tokens of about 4 characters. On the built-in tokenizer's
tokens (about 1.3 characters each) the window does not reach the question and the pooling does
not cover a needle.

Needs the Hugging Face `tokenizers` package (the lent GPU machines have it) and claa-ruler. The
result is checked against claa-ruler itself: the engine's tokenizer, loading the written file,
must give the ids `tokenizers` gives on held-out prompts.

    python3 tests/models/make_retrieval_tokenizer.py --ruler build/server/claa-ruler \\
        --out tokenizer.json --vocab 2048
"""
import argparse
import json
import os
import subprocess
import tempfile

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

TASKS = "niah_single,niah_multikey,niah_multivalue,kv_retrieval,variable_tracking"


def ruler(binary, seed, lengths, num, tokenizer=None):
    cmd = [binary, "--tasks", TASKS, "--haystacks", "noise,salad", "--lengths", lengths,
           "--num", str(num), "--seed", str(seed)]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer, "--with_ids"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ruler", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=2048, help="including BOS and EOS")
    ap.add_argument("--seed", type=int, default=4242, help="claa-ruler seed of the corpus")
    a = ap.parse_args()

    # The corpus: prompts and answers of every task and haystack, as training will see them.
    corpus = []
    for i, lengths in enumerate(["512", "1024", "2048"]):
        for ex in ruler(a.ruler, a.seed + i, lengths, 40):
            corpus += [ex["prompt"], ex["answer"]]
    print(f"corpus: {len(corpus)} texts, {sum(map(len, corpus)) / 1e6:.1f} M characters")

    with tempfile.TemporaryDirectory() as tmp:
        base_path = os.path.join(tmp, "base.json")
        subprocess.run([a.ruler, "--write_tokenizer", base_path], check=True)
        with open(base_path) as f:
            base = json.load(f)
    bpe = Tokenizer(models.BPE())
    pt = base["pre_tokenizer"]
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=pt["add_prefix_space"],
                                                 use_regex=pt["use_regex"])
    trainer = trainers.BpeTrainer(vocab_size=a.vocab - 2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    learned = json.loads(bpe.to_str())["model"]
    vocab = learned["vocab"]
    assert len(vocab) == a.vocab - 2, len(vocab)
    bos, eos = a.vocab - 2, a.vocab - 1

    # The built-in tokenizer's file with the learned vocabulary and merges, BOS/EOS last.
    out = base
    out["model"]["vocab"] = vocab
    merges = learned["merges"]
    if base["model"]["merges"] and isinstance(base["model"]["merges"][0], str):
        merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    out["model"]["merges"] = merges
    for t in out["added_tokens"]:
        t["id"] = bos if t["content"] == "<|begin_of_text|>" else eos
    out["post_processor"]["special_tokens"]["<|begin_of_text|>"]["ids"] = [bos]
    with open(a.out, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)

    # The engine (through claa-ruler --with_ids) must tokenize like `tokenizers` does.
    hf = Tokenizer.from_file(a.out)
    held_out = ruler(a.ruler, a.seed + 99, "512,2048", 2, tokenizer=a.out)
    mismatches = 0
    chars = tokens = 0
    for ex in held_out:
        want = hf.encode(ex["prompt"]).ids
        if want != ex["prompt_ids"]:
            mismatches += 1
        chars += len(ex["prompt"])
        tokens += len(want)
        if hf.encode(ex["answer"], add_special_tokens=False).ids != ex["answer_ids"]:
            mismatches += 1
    print(f"wrote {a.out}: vocab {a.vocab} (BOS {bos}, EOS {eos}); {chars / tokens:.2f} "
          f"characters per token on {len(held_out)} held-out prompts; engine vs tokenizers: "
          f"{mismatches} mismatches")
    if mismatches:
        raise SystemExit("the engine tokenizes differently from tokenizers")


if __name__ == "__main__":
    main()
