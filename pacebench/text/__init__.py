"""The text path's Hugging Face side: GLUE with RoBERTa-base and GSM-8K with Phi-3-mini, PACE on peft's LoRA
(docs/text.md).

    models.py   local Hugging Face folders, peft LoRA, PACE's noise on the LoRA branch output
    tasks.py    TASKS: per suite reader, the model kind, encoding, the methods' objective, the scored metric

The readers of the text files are data readers like the image ones (`data/text.py`), and the text trainer plugs
into the one epoch loop (`training/text.py`). transformers, peft and tokenizers are the optional extra
`pacebench[text]`; this package imports them only when a text run starts, so the image path never needs them. The
text tables (`pacebench report --table glue|gsm8k`) are declared by their suite files, benchmarks/glue.toml and
gsm8k.toml, as the image suites' tables are.
"""
