"""Tiny text data in the real on-disk formats and tiny random models saved as local Hugging Face folders.

The tokenizers are trained here, with the `tokenizers` library, on the very data the tests write; the models are a
2-block RoBERTa and a 2-block Phi-3 built from configs. Nothing is downloaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

WORDS = [
    "the",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "a",
    "mat",
    "big",
    "small",
    "red",
    "blue",
    "house",
    "car",
    "tree",
    "who",
    "what",
    "is",
    "not",
    "was",
    "there",
    "here",
    "many",
    "how",
    "much",
    "does",
    "cost",
    "each",
    "apples",
    "pens",
    "books",
    "sells",
    "buys",
]
CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_rte(root: Path, n_train: int = 24, n_dev: int = 8) -> Path:
    """RTE as GLUE's original TSVs (header, string labels)."""
    rng = random.Random(0)
    folder = root / "glue" / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            rows.append(f"{i}\t{sentence(rng)}\t{sentence(rng, 4)}\t{rng.choice(['entailment', 'not_entailment'])}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder


def write_stsb(root: Path, n_train: int = 24, n_dev: int = 8) -> Path:
    """STS-B as the Hugging Face parquet export (sentence1, sentence2, label: a float score, idx)."""
    rng = random.Random(1)
    folder = root / "glue" / "STS-B"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", n_dev)):
        frame = pd.DataFrame(
            {
                "sentence1": [sentence(rng) for _ in range(n)],
                "sentence2": [sentence(rng) for _ in range(n)],
                "label": [round(rng.uniform(0, 5), 2) for _ in range(n)],
                "idx": list(range(n)),
            }
        )
        frame.to_parquet(folder / f"{split}-00000-of-00001.parquet")
    return folder


def gsm8k_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        rows.append(
            {
                "question": f"how many apples does a cat buy if each costs {a} and it buys {b} ?",
                "answer": f"each costs {a} so {a} * {b} = <<{a}*{b}={a * b}>>{a * b}\n#### {a * b:,}",
            }
        )
    return rows


def write_gsm8k(root: Path, n_train: int = 16, n_test: int = 4) -> Path:
    folder = root / "gsm8k"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 2), ("test", n_test, 3)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(n, seed)))
    return folder


def _texts(root: Path) -> list[str]:
    texts = [" ".join(WORDS)] + [str(i) for i in range(100)] + ["= * + - < > # , . ? \n"]
    for path in root.rglob("*"):
        if path.suffix in (".tsv", ".jsonl"):
            texts += path.read_text().split("\n")
    return texts


def _tokenizer(root: Path, specials: list[str], chat: bool) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.train_from_iterator(_texts(root), trainers.WordLevelTrainer(special_tokens=specials))
    if not chat:  # RoBERTa's templates: <s> A </s> and <s> A </s></s> B </s>
        s, e = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", s), ("</s>", e)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if chat:
        fast.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|end|>"]})
        fast.chat_template = CHAT
    return fast


def tiny_roberta(folder: Path, data_root: Path) -> Path:
    """A 2-block RoBERTa (hidden 32) with a word-level tokenizer trained on the GLUE files under `data_root`."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    tokenizer = _tokenizer(data_root, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], chat=False)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=600,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_phi3(folder: Path, data_root: Path) -> Path:
    """A 2-block Phi-3 (hidden 32, fused qkv_proj and gate_up_proj) with a chat template."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    tokenizer = _tokenizer(data_root, ["<s>", "<pad>", "</s>", "<unk>"], chat=True)
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        original_max_position_embeddings=1024,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    Phi3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
