"""The text path: GLUE with RoBERTa-base and GSM-8K with Phi-3-mini, PACE on peft's LoRA (docs/text.md).

    data.py     GLUE / GSM-8K readers for local files, and their layouts for `pacebench data check`
    models.py   local Hugging Face folders, peft LoRA, PACE's noise on the LoRA branch output
    tasks.py    TASKS: per suite reader, the model kind, encoding, the methods' objective, the scored metric
    train.py    the text training loop (same methods, store records and evaluation rules as the image loop)

transformers, peft and tokenizers are the optional extra `pacebench[text]`; this package imports them only when a
text run starts, so the image path never needs them. The text tables (`pacebench report --table glue|gsm8k`) are
declared by their suite files, benchmarks/glue.toml and gsm8k.toml, as the image suites' tables are.
"""
