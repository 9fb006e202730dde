"""The text path: GLUE and GSM-8K readers, PACE's noise on peft's LoRA branch, the task objectives, merging, and
both suites end to end through the CLI on tiny random models saved as local Hugging Face folders."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import text_fixtures as tf
import torch
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.data import text as tdata
from pacebench.errors import DataError, UsageError

runner = CliRunner()
FAST = ["--epochs", "1", "-t", "batch_size=8", "-t", "eval_batch_size=4", "--device", "cpu"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text")
    data = root / "data"
    tf.write_rte(data)
    tf.write_stsb(data)
    tf.write_gsm8k(data)
    return {
        "data": data,
        "roberta": tf.tiny_roberta(root / "roberta", data),
        "phi3": tf.tiny_phi3(root / "phi3", data),
        "db": root / "text.db",
    }


def invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


# ---- readers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "header", "row", "texts", "label"),
    [
        ("cola", None, "gj04\t1\t\tThe sailors rode the breeze .", ("The sailors rode the breeze .",), 1),
        ("sst2", "sentence\tlabel", "a fine film \t1", ("a fine film ",), 1),
        (
            "mrpc",
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "0\t1\t2\tHe left .\tHe went .",
            ("He left .", "He went ."),
            0,
        ),
        ("qnli", "index\tquestion\tsentence\tlabel", "0\tWho ?\tHim .\tnot_entailment", ("Who ?", "Him ."), 1),
        ("rte", "index\tsentence1\tsentence2\tlabel", "0\tA b .\tA .\tentailment", ("A b .", "A ."), 0),
        (
            "stsb",
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
            "0\tmain\tf\t2012\t1\tnone\tnone\tA man .\tA guy .\t4.250",
            ("A man .", "A guy ."),
            4.25,
        ),
    ],
)
def test_glue_tsv_columns_and_labels_per_task(tmp_path, task, header, row, texts, label):
    path = tmp_path / "dev.tsv"
    path.write_text("\n".join(([header] if header else []) + [row]) + "\n")
    [example] = tdata.read_glue(path, task, 2)
    assert example.texts == texts and example.label == label


def test_glue_tsv_quirks_byte_order_mark_and_extra_fields(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA .\tB .\n", encoding="utf-8")
    assert tdata.read_glue(path, "mrpc", 2) == [tdata.Example(("A .", "B ."), 1)]
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    path.write_text(f"{header}\n0\tm\tf\t2012\t1\tn\tn\tA .\tB .\textra\t3.5\n")
    assert tdata.read_glue(path, "stsb", 1)[0].label == 3.5  # the score is the last field


def test_glue_parquet_export_and_tsv_give_the_same_ids(tmp_path):
    import pandas as pd

    pd.DataFrame({"sentence1": ["A b ."], "sentence2": ["A ."], "label": [1], "idx": [0]}).to_parquet(
        tmp_path / "validation-00000-of-00001.parquet"
    )
    path = tdata.glue_file(tmp_path, "dev")
    assert path.suffix == ".parquet"
    assert tdata.read_glue(path, "rte", 2)[0] == tdata.Example(("A b .", "A ."), 1)  # 1 = not_entailment in both


def test_glue_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="missing .*dev.tsv"):
        tdata.glue_file(tmp_path, "dev")
    (tmp_path / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA\tB\tmaybe\n")
    with pytest.raises(DataError, match=r"line 2: label 'maybe'"):
        tdata.read_glue(tmp_path / "dev.tsv", "rte", 2)
    (tmp_path / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA\n")
    with pytest.raises(DataError, match="line 2: 2 tab-separated fields"):
        tdata.read_glue(tmp_path / "dev.tsv", "rte", 2)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nok\t-1\n")  # the export's unlabelled test split
    with pytest.raises(DataError, match="label -1, outside 0..1"):
        tdata.read_glue(tmp_path / "dev.tsv", "sst2", 2)


def test_gsm8k_reader_and_answer_extraction(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "so 2 + 3 = <<2+3=5>>5\n#### 1,005"}) + "\n\n")
    assert tdata.read_gsm8k(path) == [tdata.Example(("q?", "so 2 + 3 = <<2+3=5>>5\n#### 1,005"), "1005")]
    assert tdata.final_number("it is 3 then 4.50 dollars") == "4.5"
    assert tdata.final_number("x = 7\n#### 12\n\nQuestion: 99") == "12"  # the first '####' wins, not the last number
    assert tdata.final_number("#### $-2,000.00") == "-2000"
    assert tdata.final_number("no number") is None
    path.write_text(json.dumps({"question": "q?", "answer": "no final line"}) + "\n")
    with pytest.raises(DataError, match="line 1: the answer does not end in '#### <number>'"):
        tdata.read_gsm8k(path)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match="line 1: expected a JSON object"):
        tdata.read_gsm8k(path)


def test_tune_phase_holds_out_train_and_never_opens_the_reported_split(world, tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    (folder / "train.tsv").write_text((world["data"] / "glue/RTE/train.tsv").read_text())
    (folder / "dev.tsv").write_text("broken")  # would fail if read
    files = tdata.glue_files(folder, "rte", 2)
    tune = tdata.text_splits(files, "dev", "tune")
    again = tdata.text_splits(files, "dev", "tune")
    assert list(tune.evals) == ["val"] and len(tune.evals["val"]) == round(0.1 * 24)
    assert tune.train == again.train and len(tune.train) + len(tune.evals["val"]) == 24
    assert not set(map(id, tune.train)) & set(map(id, tune.evals["val"]))
    with pytest.raises(DataError):
        tdata.text_splits(files, "dev", "final")


# ---- models: noise, merge, the pre-trained side ------------------------------------------------------------------


def _classifier(world, rank: int = 4):
    from pacebench.text import models

    torch.manual_seed(0)
    model = models.build(world["roberta"], "classify", "lora:query,value", rank, 8.0, 2)
    for layer in models.lora_layers(model):  # B = 0 would make every check below trivially true
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.5)
    return model


def _batch(world, n: int = 3):
    from pacebench.text import models
    from pacebench.text.tasks import Glue, Items, collate

    tok = models.load_tokenizer(world["roberta"])
    task = Glue("rte", 2, {"task": "rte"})
    split = tdata.text_splits(tdata.glue_files(world["data"] / "glue/RTE", "rte", 2), "dev", "final")
    items = task.encode(split.train[:n], tok)
    return collate(tok.pad_token_id, torch.long)([Items(items)[i] for i in range(n)])


def test_lora_sits_on_query_and_value_with_noise_holders_by_block(world):
    from pacebench.core.methods import METHODS, SetupInfo
    from pacebench.text.models import BranchNoise, lora_layers

    model = _classifier(world)
    names = sorted({n.split(".")[-1] for n, m in model.named_modules() if m in set(lora_layers(model))})
    assert names == ["query", "value"]
    counts = model.parameter_counts()
    assert counts["adapter_params"] == 2 * 2 * (4 * 32 + 32 * 4)  # 2 blocks x (q, v) x (A + B)
    assert counts["trainable_params"] > counts["adapter_params"]  # + the classification head
    pace = METHODS.get("pace")(METHODS.get("pace").make_config({"sigma": 1.5}))
    facts = pace.setup(model, SetupInfo(10, 2))
    assert facts["sigmas"] == pytest.approx([1.5 * (3 - pos) / 3 for pos in range(3)])  # σ(D+1-l)/(D+1), D = 2
    holders = [m for m in model.modules() if isinstance(m, BranchNoise)]
    assert sorted(h.position for h in holders) == [0, 0, 1, 1]
    assert all(h.noise.sigma == pytest.approx(facts["sigmas"][h.position]) for h in holders)


def test_noise_multiplies_the_lora_branch_per_sample_and_channel_shared_over_tokens(world):
    from pacebench.core.methods import METHODS, SetupInfo
    from pacebench.text.models import lora_layers

    model = _classifier(world)
    METHODS.get("pace")(METHODS.get("pace").make_config({})).setup(model, SetupInfo(10, 2))
    layer = next(iter(lora_layers(model)))
    seen = {}

    def capture(module, inputs, output):
        seen["clean"], seen["noisy"] = (
            module.weight.new_tensor(0) + torch.nn.functional.linear(inputs[0], module.weight),
            output,
        )

    layer.lora_B["default"].register_forward_hook(capture)  # runs after the noise hook, so it sees the noisy output
    x, _, _ = _batch(world)
    model.train()
    model(x)
    ratio = seen["noisy"] / seen["clean"]
    assert ratio.shape == seen["clean"].shape and ratio.shape[0] == 3
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)  # one draw for all tokens of a sample
    assert ratio[:, 0].std(0).mean() > 0.1 and ratio[0, 0].std() > 0.1  # differs over samples and channels
    model.eval()
    model(x)
    assert torch.allclose(seen["noisy"], seen["clean"], atol=1e-6)  # evaluation is noise-free


def test_merged_evaluation_equals_the_unmerged_model_and_pretrained_turns_lora_off(world):
    from transformers import AutoModelForSequenceClassification

    model = _classifier(world).eval()
    x, _, _ = _batch(world)
    with torch.no_grad():
        plain = model(x)
        with model.merged():
            merged = model(x)
        after = model(x)
        with model.pretrained():
            before = model(x)
        model.net.base_model.model.classifier.modules_to_save["default"].load_state_dict(
            model.net.base_model.model.classifier.original_module.state_dict()
        )
        with model.pretrained():
            base_logits = model(x)
    assert torch.allclose(plain, merged, atol=1e-5) and torch.allclose(plain, after, atol=1e-6)
    assert not torch.allclose(plain, before, atol=1e-3)  # LoRA (B != 0) is what changes the logits
    reference = AutoModelForSequenceClassification.from_pretrained(
        world["roberta"], num_labels=2, local_files_only=True
    ).eval()
    reference.classifier.load_state_dict(model.net.base_model.model.classifier.original_module.state_dict())
    with torch.no_grad():
        expected = reference(input_ids=x[:, 0], attention_mask=x[:, 1]).logits
    assert torch.allclose(base_logits, expected, atol=1e-5)


def test_shared_dropout_gives_both_copies_one_mask_and_is_dropout_for_one_copy(world):
    from pacebench.core.droppath import copies
    from pacebench.text.models import SharedDropout, share_dropout

    model = _classifier(world)
    assert share_dropout(model) > 0 and not any(type(m) is torch.nn.Dropout for m in model.modules())
    drop = SharedDropout(0.5).train()
    x = torch.ones(4, 3, 200)
    with copies(drop, 2):
        out = drop(torch.cat([x, x]))
    assert torch.equal(out[:4], out[4:]) and not torch.equal(out[0], out[1])  # per copy the same, per sample not
    single = drop(x)
    assert set(single.unique().tolist()) == {0.0, 2.0} and abs(float(single.mean()) - 1.0) < 0.05


# ---- objectives -------------------------------------------------------------------------------------------------


def test_token_objective_scores_only_answer_tokens():
    from pacebench.text.tasks import GENERATION, IGNORE

    a, b = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    y = torch.tensor([[IGNORE, 1, 2], [IGNORE, IGNORE, 4]])
    mask = y != IGNORE
    expected = (a - b).pow(2).sum(-1)[mask].mean()
    assert GENERATION.distance(a, b, y) == pytest.approx(float(expected), rel=1e-6)
    b2 = b.clone()
    b2[0, 0] += 100  # a prompt position: must not count
    assert GENERATION.distance(a, b2, y) == pytest.approx(float(expected), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(a[mask], y[mask])
    assert GENERATION.loss(a, y) == pytest.approx(float(ce), rel=1e-6)


def test_text_options_are_checked():
    from pacebench.text.tasks import Glue, Settings

    assert Settings.of({"task": "rte", "lora_alpha": 16, "max_seq_len": 128}) == Settings(
        max_seq_len=128, lora_alpha=16.0
    )
    with pytest.raises(UsageError, match="unknown text option 'max_seq_length'"):
        Glue("rte", 2, {"task": "rte", "max_seq_length": [128]})
    with pytest.raises(UsageError, match="invalid text settings"):
        Settings.of({"warmup_ratio": 1.5})


def test_an_evaluation_set_is_tokenised_once_however_often_it_is_scored():
    from contextlib import nullcontext

    from pacebench.data.text import Example
    from pacebench.text.tasks import Glue

    calls = []

    class Tokenizer:
        pad_token_id = 0

        def __call__(self, texts, truncation, max_length):
            calls.append(len(texts))
            return {"input_ids": [[1, len(t)] for t in texts]}

    class Model:
        def eval(self):
            return self

        def __call__(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 1] % 2, 2).float()  # parity of the text's length

    task = Glue("rte", 2, {"task": "rte"})
    dev = [Example(("a",), 1), Example(("bb",), 0), Example(("ccc",), 0)]
    scores = [task.score(Model(), dev, Tokenizer(), 2, torch.device("cpu"), nullcontext) for _ in range(3)]
    assert scores == [pytest.approx(200 / 3)] * 3 and calls == [3], "tokenised at the first evaluation only"
    task.score(Model(), list(dev), Tokenizer(), 2, torch.device("cpu"), nullcontext)
    assert calls == [3, 3], "another list is another evaluation set"


def test_stsb_uses_mse_and_the_score_difference():
    from pacebench.text.tasks import Glue

    task = Glue("stsb", 1, {"task": "stsb"})
    out, other, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [1.0]]), torch.tensor([0.0, 2.0])
    assert task.num_labels() == 1 and task.hits(out, y) is None
    assert task.objective().loss(out, y) == pytest.approx((1.0 + 0.0) / 2)
    assert task.objective().distance(out, other, y) == pytest.approx((0.25 + 1.0) / 2)


def test_pace_on_text_is_ce_plus_lambda_times_the_distance_of_two_noisy_copies(world):
    from pacebench.core.methods import METHODS, SetupInfo

    model = _classifier(world)
    cls = METHODS.get("pace")
    method = cls(cls.make_config({"lam": 0.5}))
    method.setup(model, SetupInfo(10, 2))
    x, y, idx = _batch(world)
    model.train()
    torch.manual_seed(1)
    out = method.loss(model, x, y, idx)
    assert out.parts["consistency"] > 0
    parts = {k: float(v.detach()) for k, v in out.parts.items()}
    assert float(out.loss.detach()) == pytest.approx(parts["ce"] + 0.5 * parts["consistency"], rel=1e-6)


# ---- end to end -------------------------------------------------------------------------------------------------


def _db(world) -> list[str]:
    return ["--db", f"sqlite:///{world['db']}", "--data-root", str(world["data"])]


def test_glue_and_gsm8k_run_end_to_end_and_report_beside_the_slides(world, tmp_path):
    result = invoke(
        "run",
        "glue",
        "--datasets",
        "rte,stsb",
        "--methods",
        "baseline,pace",
        "--weights",
        str(world["roberta"]),
        *FAST,
        *_db(world),
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        "run",
        "gsm8k",
        "--methods",
        "pretrained,baseline,pace",
        "--weights",
        str(world["phi3"]),
        *FAST,
        "-t",
        "precision=fp32",
        *_db(world),
    )
    assert result.exit_code == 0, result.output
    with sqlite3.connect(world["db"]) as con:
        runs = con.execute("select id, suite, dataset, method, status, metrics from runs").fetchall()
        epochs = con.execute("select run_id, grad_norm_mean, fp_distance, test_acc from epochs").fetchall()
    assert len(runs) == 7 and all(r[4] == "done" for r in runs)
    by_run = {r[0]: r for r in runs}
    for run_id, gn, fp, test in epochs:
        trained = by_run[run_id][3] != "pretrained"
        assert (gn is not None and gn > 0) == trained  # the untuned row has no training numbers
        assert fp is not None and test is not None
    pretrained = next(r for r in runs if r[3] == "pretrained")
    assert json.loads(pretrained[5])["fp_distance"] == 0.0  # nothing was trained
    from pacebench.store import Store

    store = Store(f"sqlite:///{world['db']}")
    kept = store.run_weights(next(r[0] for r in runs if r[1:4] == ("glue", "stsb", "pace")))
    assert any("lora_A" in k for k in kept) and any("classifier" in k for k in kept)  # LoRA and the task head
    assert not store.run_weights(pretrained[0])
    stored = store.predictions([r[0] for r in runs])  # every run's per-example predictions, by its metric
    stsb = next(r[0] for r in runs if r[1:4] == ("glue", "stsb", "pace"))
    assert stored[(stsb, "dev")].metric == "pearson" and stored[(stsb, "dev")].correct is None
    assert {stored[(r[0], "test")].metric for r in runs if r[1] == "gsm8k"} == {"accuracy"}
    glue = invoke("report", "--table", "glue", "--format", "md", "--db", f"sqlite:///{world['db']}")
    assert glue.exit_code == 0, glue.output
    assert "| 63.40 |" in glue.output and "| 66.20 |" in glue.output and "measured" in glue.output
    gsm = invoke("report", "--table", "gsm8k", "--format", "csv", "--db", f"sqlite:///{world['db']}")
    assert "62.01" in gsm.output and "78.77" in gsm.output and gsm.output.count("measured") == 3
    plot = invoke(
        "plot",
        "grad-norm",
        "--suite",
        "glue",
        "--dataset",
        "rte",
        "--out",
        str(tmp_path / "g.png"),
        "--db",
        f"sqlite:///{world['db']}",
    )
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_data_check_text_suites(world, tmp_path):
    result = invoke("data", "check", "gsm8k", "--root", str(world["data"]))
    assert result.exit_code == 0 and "train=16 test=4" in result.output
    result = invoke("data", "check", "glue", "--root", str(world["data"]))
    assert result.exit_code == 1  # four GLUE tasks are absent in the test data
    assert "train=24" in result.output and "dev=8" in result.output  # (the terminal table may wrap the sizes)
    assert "glue/cola: missing data folder" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gsm8k", "--methods", "pace_fast"], "method pace_fast does not run on suite gsm8k"),
        (["glue", "--datasets", "rte", "--methods", "sam"], "method sam does not run on suite glue"),
        (["glue", "--datasets", "rte", "-t", "adapter=lora_mul"], "text suites take adapter=lora:MODULE"),
        (["glue", "--datasets", "rte", "-t", "adapter=lora:nothing"], "cannot put LoRA on ['nothing']"),
    ],
)
def test_text_errors_are_one_line(world, tmp_path, args, message):
    weights = world["phi3"] if args[0] == "gsm8k" else world["roberta"]
    result = invoke(
        "run",
        *args,
        "--weights",
        str(weights),
        *FAST,
        "--db",
        f"sqlite:///{tmp_path}/e.db",
        "--data-root",
        str(world["data"]),
    )
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()), result.output


def test_missing_model_folder_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_WEIGHTS", str(tmp_path))
    from pacebench.core import backbones

    with pytest.raises(DataError, match="model folder for backbone roberta_base not found at .*roberta-base"):
        backbones.resolve("roberta_base")
    with pytest.raises(UsageError, match="is a text model"):
        backbones.build("roberta_base", 2, 32, 0.0)


def test_folder_hash_covers_config_and_tokenizer(world, tmp_path):
    import shutil

    from pacebench.core.backbones import sha256

    copy = shutil.copytree(world["roberta"], tmp_path / "m")
    before = sha256(copy)
    (copy / "README.md").write_text("notes")
    assert sha256(copy) == before
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text().replace("cat", "cot"))
    assert sha256(copy) != before


def test_pretrained_never_trains_an_image_model(make_vit):
    from pacebench.core.methods import METHODS

    cls = METHODS.get("pretrained")
    assert not cls.trains
    with pytest.raises(UsageError, match="trains nothing"):
        cls(cls.make_config({})).loss(
            make_vit(), torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
        )


def test_gsm8k_learns_only_the_answer_and_scores_the_final_number(world):
    from contextlib import nullcontext

    from pacebench.text import models
    from pacebench.text.tasks import IGNORE, Gsm8k, pad

    tok = models.load_tokenizer(world["phi3"])
    task = Gsm8k("gsm8k", 1, {"prompt": "chat"})
    example = tdata.read_gsm8k(world["data"] / "gsm8k/train.jsonl")[0]
    [(ids, labels)] = task.encode([example], tok)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": example.texts[0]}], add_generation_prompt=True, tokenize=False
    )
    n_prompt = len(tok(prompt)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt and IGNORE not in labels[n_prompt:]
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    assert example.texts[1].split()[-1] in tok.decode(ids[n_prompt:])  # the worked answer, '#### N' included

    problems = tdata.read_gsm8k(world["data"] / "gsm8k/test.jsonl")

    class Oracle:  # "generates" each problem's worked answer, then a next question (ignored after the '####')
        def eval(self) -> Oracle:
            return self

        def generate(self, ids, mask, max_new_tokens, pad_id, eos):
            texts = [e.texts[1] + "\nQuestion: 999" for e in problems]
            return pad([tok(t, add_special_tokens=False)["input_ids"] for t in texts], pad_id)

    scored = task.evaluate(Oracle(), problems, tok, 8, torch.device("cpu"), nullcontext)
    assert scored.score == 100.0 and scored.correct.all() and list(scored.predicted) == [e.label for e in problems]
    wrong = [tdata.Example(e.texts, str(int(e.label) + 1)) for e in problems]
    assert task.score(Oracle(), wrong, tok, 8, torch.device("cpu"), nullcontext) == 0.0


def test_text_tune_scores_phase_one_on_held_out_train(world, tmp_path):
    db = f"sqlite:///{tmp_path}/tune.db"
    result = invoke(
        "tune",
        "glue",
        "--datasets",
        "rte",
        "--grid",
        "lam=0.5,1",
        "--seeds",
        "0",
        "--tune-seeds",
        "0",
        "--weights",
        str(world["roberta"]),
        *FAST,
        "--db",
        db,
        "--data-root",
        str(world["data"]),
    )
    assert result.exit_code == 0, result.output
    with sqlite3.connect(f"{tmp_path}/tune.db") as con:
        rows = con.execute("select phase, metrics from runs where status = 'done'").fetchall()
    phases = sorted(p for p, _ in rows)
    assert phases == ["final", "tune", "tune"]
    for phase, metrics in rows:
        evals = json.loads(metrics)["evals"]
        assert list(evals) == (["val"] if phase == "tune" else ["dev"])


def test_missing_text_extra_is_a_one_line_error(monkeypatch):
    import importlib.util

    from pacebench.text import models

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(UsageError, match=r"text suites need peft: pip install 'pacebench\[text\]'"):
        models.require_text_extra()


def test_weight_decay_spares_biases(world):
    from pacebench.training.text import decay_groups

    model = _classifier(world)
    params = [p for p in model.parameters() if p.requires_grad]
    decayed, spared = decay_groups(params, 0.1)
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert {p.ndim for p in decayed["params"]} == {2} and {p.ndim for p in spared["params"]} == {1}
    assert len(decayed["params"]) + len(spared["params"]) == len(params) and spared["params"]  # the head's biases


def test_glue_metrics_by_hand():
    from pacebench.text.tasks import METRICS

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # predicts 0, 1, 1, 0
    y = torch.tensor([0, 1, 0, 0])
    assert METRICS["accuracy"](logits, y) == pytest.approx(75.0)
    tp, tn, fp, fn = 1, 2, 1, 0
    mcc = (tp * tn - fp * fn) / ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    assert METRICS["mcc"](logits, y) == pytest.approx(100 * mcc)
    scores, gold = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 3.0, 5.0])
    assert METRICS["pearson"](scores, gold) == pytest.approx(100 * 0.9819805, rel=1e-6)
    assert METRICS["pearson"](torch.ones(3, 1), gold) != METRICS["pearson"](torch.ones(3, 1), gold)  # NaN


def test_lora_can_start_from_the_lora_authors_file(world, tmp_path):
    from pacebench.text import models

    source = _classifier(world)  # LoRA B non-zero, as after MNLI
    loralib = {}
    for name, layer in models.named_lora_layers(source.net):
        module = name.removeprefix("base_model.model.")
        loralib[f"{module}.lora_A"] = layer.lora_A["default"].weight.detach().clone()
        loralib[f"{module}.lora_B"] = layer.lora_B["default"].weight.detach().clone()
    loralib["classifier.out_proj.weight"] = torch.zeros(3, 32)  # MNLI's 3-class head: ignored
    torch.save(loralib, tmp_path / "roberta_base_lora_mnli.bin")
    fresh = models.build(world["roberta"], "classify", "lora:query,value", 4, 8.0, 2)
    assert models.load_lora(fresh, tmp_path / "roberta_base_lora_mnli.bin") == 8  # 2 blocks x (q, v) x (A, B)
    for (_, a), (_, b) in zip(models.named_lora_layers(source.net), models.named_lora_layers(fresh.net), strict=True):
        assert torch.equal(a.lora_B["default"].weight, b.lora_B["default"].weight)
    wrong_rank = models.build(world["roberta"], "classify", "lora:query,value", 2, 8.0, 2)
    with pytest.raises(DataError, match="is the rank the same"):
        models.load_lora(wrong_rank, tmp_path / "roberta_base_lora_mnli.bin")
    torch.save({"classifier.dense.weight": torch.zeros(2, 2)}, tmp_path / "other.bin")
    with pytest.raises(DataError, match="holds no LoRA matrix"):
        models.load_lora(fresh, tmp_path / "other.bin")


def test_a_copied_suite_file_starts_rte_from_a_lora_file(world, tmp_path, monkeypatch):
    """The documented way to change a text setting: a copy of the suite file, found through PACEBENCH_SUITES."""
    import shutil

    from pacebench.plan.suites import all_suites
    from pacebench.settings import builtin_suites_dir as suites_dir
    from pacebench.text import models

    source = _classifier(world, rank=8)
    torch.save(
        {
            f"{n.removeprefix('base_model.model.')}.lora_{p}": getattr(m, f"lora_{p}")["default"].weight.detach()
            for n, m in models.named_lora_layers(source.net)
            for p in "AB"
        },
        tmp_path / "mnli.bin",
    )
    suites = tmp_path / "suites"
    shutil.copytree(suites_dir() / "reference", suites / "reference")
    text = (suites_dir() / "glue.toml").read_text()
    rte = 'data = { task = "rte" }\ntrain = { lr = 5e-4, batch_size = 32, epochs = 80 }\n'
    assert rte in text
    (suites / "glue.toml").write_text(
        text.replace(
            rte + "options = { max_seq_len = [512], lora_alpha = [8]",
            rte + f'options = {{ init_lora = ["{tmp_path / "mnli.bin"}"], max_seq_len = [512], lora_alpha = [16]',
        )
    )
    monkeypatch.setenv("PACEBENCH_SUITES", str(suites))
    all_suites.cache_clear()
    try:
        db = f"sqlite:///{tmp_path}/init.db"
        result = invoke(
            "run",
            "glue",
            "--datasets",
            "rte",
            "--methods",
            "baseline",
            "--weights",
            str(world["roberta"]),
            *FAST,
            "--db",
            db,
            "--data-root",
            str(world["data"]),
        )
        assert result.exit_code == 0, result.output
        from pacebench.store import Store

        [run] = Store(db).runs()
        assert run.data_options["init_lora"] == str(tmp_path / "mnli.bin") and run.data_options["lora_alpha"] == 16
        assert run.setup["lora_started_from"]["matrices"] == 8
    finally:
        all_suites.cache_clear()


@pytest.mark.parametrize("method", ["pace", "pace_fast"])
def test_a_resumed_text_run_ends_as_an_uninterrupted_one(world, method):
    """The workers' checkpoints (training/checkpoint.py) hold a text run too: LoRA, head, optimizer, the linear
    schedule, pace_fast's logit history and every random state (RoBERTa's dropout included)."""
    from pacebench.plan.planner import PlanRequest, plan
    from pacebench.training import Environment, train_run
    from pacebench.training.checkpoint import Control

    [spec] = plan(
        PlanRequest(
            "glue",
            ["rte"],
            [method],
            train={"epochs": 3, "batch_size": 8, "eval_batch_size": 4},
            weights=world["roberta"],
        )
    )
    env = Environment(device=torch.device("cpu"), data_root=world["data"], weights=world["roberta"])

    class Keep(Control):
        saved: dict[int, bytes] = {}

        def epoch_done(self, epoch, capture):
            self.saved[epoch] = capture()

    keep = Keep()
    whole = train_run(spec, env, lambda e, r: None, control=keep)
    resumed_control = Control()
    resumed_control.resume = keep.saved[0]
    epochs: list[int] = []
    resumed = train_run(spec, env, lambda e, r: epochs.append(e), control=resumed_control)
    assert epochs == [1, 2]
    assert resumed.metrics == whole.metrics
    assert all(torch.equal(resumed.weights[k], whole.weights[k]) for k in whole.weights)


def test_text_runs_take_fig2_readings_and_they_never_change_training(world):
    """As for images: the clean model's task-gradient norm on train and held-out, and the held-out FP-distance, at
    evaluation epochs; with --diagnostics off the same run trains to the same weights."""
    from pacebench.plan.planner import PlanRequest, plan
    from pacebench.training import Environment, train_run

    [spec] = plan(
        PlanRequest(
            "glue",
            ["rte"],
            ["pace"],
            train={"epochs": 2, "batch_size": 8, "eval_batch_size": 4},
            weights=world["roberta"],
        )
    )
    runs = {}
    for mode in ("off", "eval"):
        env = Environment(
            device=torch.device("cpu"), data_root=world["data"], weights=world["roberta"], diagnostics=mode
        )
        records: list = []
        runs[mode] = (train_run(spec, env, lambda e, r, records=records: records.append(r)), records)
    (off, off_epochs), (on, on_epochs) = runs["off"], runs["eval"]
    assert all(torch.equal(on.weights[k], off.weights[k]) for k in off.weights)
    assert [r.loss for r in on_epochs] == [r.loss for r in off_epochs]
    assert all(r.grad_norm_task_heldout is None for r in off_epochs)
    last = on_epochs[-1]
    assert last.grad_norm_task_train > 0 and last.grad_norm_task_heldout > 0 and last.fp_distance_heldout >= 0
    [(name, kept)] = on.predictions.items()  # RTE's dev set, example by example, as `pacebench compare` pairs it
    assert name == "dev" and kept.metric == "accuracy" and len(kept.ids) == len(kept.target)
    assert 100 * kept.correct.mean() == pytest.approx(on.metrics["evals"]["dev"])


def test_the_glue_table_names_each_task_by_its_metric():
    """benchmarks/glue.toml names each task's column in the slides' CSV; its suffix is the task's own metric."""
    from pacebench.data.text import GLUE_TASKS
    from pacebench.plan.suites import load_suite

    table = load_suite("glue").paper_table
    assert table is not None and set(table.dataset_columns) == set(GLUE_TASKS)
    for task, column in table.dataset_columns.items():
        assert column.removeprefix(f"{task}_") in (GLUE_TASKS[task].metric, GLUE_TASKS[task].metric[:3]), column
