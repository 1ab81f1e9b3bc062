"""Stage 04 training: labels, EOS, truncation accounting, loss normalization, resume, profile errors.

Real model (the built-in SmolLM2-135M), real peft/accelerate, tiny data: a few steps on short sequences.
"""

from __future__ import annotations

import contextlib
import csv

import pytest
import torch

from instructcoder_utils import train as T
from instructcoder_utils.config import ProfileError, load_profile
from instructcoder_utils.models import (
    TRAINED_WEIGHTS,
    is_trained_dir,
    load_model,
    load_tokenizer,
    load_trained,
)

MODEL = "builtin:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def tok(smollm_dir):
    return load_tokenizer(MODEL)


@pytest.fixture(scope="module")
def toy():
    return T.toy_edit_dataset(n_train=8, n_val=2, seed=1, max_lines=6)


def _profile(**training):
    base = {"lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.1, "batch_size": 2, "max_steps": 4,
            "max_length": 192, "eval_every_steps": 4, "save_every_steps": 2, "learning_rate": 1e-3,
            "max_eval_examples": 2, "warmup_ratio": 0.0, "lr_scheduler": "linear"}
    base.update(training)
    return load_profile("smoke", {"training": base})


def test_labels_mask_prompt_and_end_with_learned_eos(tok):
    ex = T.encode_example(tok, "chat_v1", "Rename f to g.", "def f():\n    return 1", "def g():\n    return 1", 512)
    assert tok.pad_token_id == tok.eos_token_id  # the setting where masking pad ids would drop EOS
    ids, labels = ex["input_ids"], ex["labels"]
    assert len(ids) == len(labels) == ex["length"]
    n_prompt = len(ids) - ex["n_labels"]
    assert all(x == T.IGNORE for x in labels[:n_prompt])
    assert labels[n_prompt:] == ids[n_prompt:]  # the whole response is learned
    assert ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id
    assert "def g()" in tok.decode(ids[n_prompt:]) and "def f()" not in tok.decode(ids[n_prompt:])


def test_collate_pads_with_eos_but_keeps_eos_labels(tok):
    rows = [T.encode_example(tok, "chat_v1", "Add x.", "a = 1", out, 512) for out in ("a = 1\nx = 2", "a = 1")]
    b = T.collate(rows, tok.pad_token_id)
    short = 1 if rows[1]["length"] < rows[0]["length"] else 0
    n = rows[short]["length"]
    assert b["input_ids"][short, n:].eq(tok.eos_token_id).all()  # pad == eos in the ids ...
    assert b["labels"][short, n - 1] == tok.eos_token_id  # ... yet the real EOS stays learned
    assert b["labels"][short, n:].eq(T.IGNORE).all()  # and padding is not
    assert b["attention_mask"][short].sum() == n
    assert b["labels"][1 - short, -1] == tok.eos_token_id


def test_overlong_examples_dropped_and_counted_never_cut(tok, toy, tmp_path):
    lengths = [T.encode_example(tok, "chat_v1", r["instruction"], r["input"], r["output"], 10**6)["length"]
               for r in toy["train"]]
    limit = sorted(lengths)[len(lengths) // 2]
    out, counts = T.tokenize_splits(toy, tok, "chat_v1", limit, tmp_path)
    assert counts["train"]["dropped_overlong"] == sum(n > limit for n in lengths) > 0
    assert counts["train"]["kept"] + counts["train"]["dropped_overlong"] == len(toy["train"])
    assert all(r["length"] <= limit and r["labels"][-1] == tok.eos_token_id for r in out["train"])
    again, counts2 = T.tokenize_splits(toy, tok, "chat_v1", limit, tmp_path)  # served from the cache
    assert counts2 == counts and again["train"]["input_ids"] == out["train"]["input_ids"]
    assert len(list(tmp_path.iterdir())) == 2  # one cache per split, reused


def test_batches_grouped_deterministic_and_subsets_nested():
    lengths = [(i * 37) % 101 for i in range(200)]
    a = T.epoch_batches(lengths, 8, seed=3, epoch=0, group=True)
    assert a == T.epoch_batches(lengths, 8, seed=3, epoch=0, group=True)  # resumable order
    assert a != T.epoch_batches(lengths, 8, seed=3, epoch=1, group=True)
    assert sorted(i for b in a for i in b) == list(range(200))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a)
    plain = T.epoch_batches(lengths, 8, seed=3, epoch=0, group=False)
    assert spread < 0.5 * sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plain)
    small, big = (set(T.subset_indices(200, 5, 150, f)) for f in (0.25, 0.5))
    assert small < big and len(small) == 38 and len(big) == 75


def test_gradient_accumulation_normalizes_over_all_response_tokens(tok, toy):
    """Two micro-batches of unequal token counts give the gradient of one batch: sum / total tokens."""
    from accelerate import Accelerator

    cfg = _profile(lora_dropout=0.0)
    model = T.build_model(cfg.training, 2, "cpu", None)
    for n, p in model.named_parameters():  # lora_B starts at zero; make the adapter non-trivial
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02)
    rows = [T.encode_example(tok, "chat_v1", r["instruction"], r["input"], r["output"], 10**6) for r in toy["train"]]
    rows = sorted(rows, key=lambda r: r["n_labels"])[:3]
    acc = Accelerator(cpu=True)
    none = contextlib.nullcontext

    def grads(batches):
        model.zero_grad()
        T.accumulate_gradients(model, [T.collate(b, tok.pad_token_id) for b in batches], acc, none, True)
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])

    split = grads([rows[:1], rows[1:]])
    whole = grads([rows])
    assert torch.allclose(split, whole, rtol=1e-4, atol=1e-7)
    # the "mean of means" a naive loop computes differs measurably (the test can fail)
    model.zero_grad()
    for b in (rows[:1], rows[1:]):
        loss, n = T.token_loss_sum(model, T.collate(b, tok.pad_token_id))
        (loss / n / 2).backward()
    naive = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    assert not torch.allclose(naive, whole, rtol=1e-3, atol=1e-6)


def _trained(run_dir):
    from safetensors.torch import load_file

    adapter = run_dir / "adapter"
    return load_file(str(adapter / ("adapter_model.safetensors" if (adapter / "adapter_config.json").is_file()
                                    else TRAINED_WEIGHTS)))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_after_crash_equals_uninterrupted_run(toy, tmp_path, method):
    cfg = _profile(method=method, train_layers=2 if method == "full" else None)
    straight = T.train_all(cfg, tmp_path / "a", toy)
    run_a = tmp_path / "a" / "04_training" / "main"

    class Crash(RuntimeError):
        pass

    def crash(step):
        if step == 2:
            raise Crash

    tok_ = load_tokenizer(MODEL)
    out_b = tmp_path / "b"
    tokenized, counts = T.tokenize_splits(toy, tok_, "chat_v1", 192, out_b / "04_training" / "cache")
    key = T.data_hash(toy["train"]) + T.data_hash(toy["validation"])
    run_b = out_b / "04_training" / "main"
    with pytest.raises(Crash):
        T.train_run(cfg, T.RunSpec("main", 1.0, 2), tokenized, counts, run_b, key, on_step=crash)
    assert (run_b / "checkpoints" / "step-000002" / "state.pt").is_file()
    assert not (run_b / "metrics.json").exists()
    resumed = T.train_all(cfg, out_b, toy)  # picks up at step 2

    wa, wb = _trained(run_a), _trained(run_b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=1e-5, atol=1e-7), k
    if method == "lora":
        assert any("lora_B" in k for k in wa)
        assert any(float(v.abs().max()) > 0 for k, v in wa.items() if "lora_B" in k)  # it did train
    else:  # only the top 2 layers and the final norm are saved, and they moved away from the base model
        base = load_model(MODEL).state_dict()
        n = len([k for k in base if k.endswith("input_layernorm.weight")])
        assert {int(k.split(".layers.")[1].split(".")[0]) for k in wa if ".layers." in k} == {n - 2, n - 1}
        assert "model.norm.weight" in wa and "model.embed_tokens.weight" not in wa
        assert any(not torch.equal(wa[k], base[k]) for k in wa)
        loaded = load_trained(load_model(MODEL), run_a / "adapter").state_dict()  # what evaluation loads
        assert all(torch.equal(loaded[k], wa[k]) for k in wa)
    rows_a = list(csv.DictReader((run_a / "loss.csv").open()))
    rows_b = list(csv.DictReader((run_b / "loss.csv").open()))
    assert [r["step"] for r in rows_a] == ["0", "1", "2", "3", "4"] and rows_a[0]["val_loss"] != ""
    assert [float(r["train_loss"]) for r in rows_a[1:]] == pytest.approx(
        [float(r["train_loss"]) for r in rows_b[1:]], rel=1e-4)
    assert resumed["runs"][0]["final_val_loss"] == pytest.approx(straight["runs"][0]["final_val_loss"], rel=1e-4)
    assert (run_a / "adapter" / "profile.yaml").is_file() and (run_a / "loss.png").is_file()
    metrics = straight["runs"][0]
    assert metrics["train_tokens"] > 0 and metrics["lora_r"] == 2 and metrics["method"] == method
    # an identical re-run is not retrained
    again = T.train_all(cfg, tmp_path / "a", toy)
    assert again["runs"][0]["seconds"] == metrics["seconds"]


@pytest.mark.parametrize("override, words", [
    ({"lora_r": 0}, "training.lora_r"),
    ({"sweeps": {"data_fractions": [0.5, 1.5]}}, "training.sweeps.data_fractions"),
    ({"lr_scheduler": "cosine_restarts"}, "training.lr_scheduler"),
    ({"lora_rank": 8}, "did you mean 'lora_r'"),
    ({"method": "full", "sweeps": {"lora_ranks": [4]}}, "lora_ranks needs method lora"),
    ({"sweeps": {"seeds": [7, 1234]}}, "training.sweeps.seeds: 1234 is the profile's seed"),
])
def test_bad_profile_values_give_one_clear_error(override, words):
    with pytest.raises(ProfileError) as exc:
        load_profile("smoke", {"training": override})
    assert words in str(exc.value)


def test_bad_template_and_modules_are_named(toy, tmp_path, smollm_dir):
    with pytest.raises(ValueError, match="unknown prompt template 'chatml'"):
        T.train_all(_profile(prompt_template="chatml"), tmp_path, toy)
    with pytest.raises(T.TrainingError, match=r"training.target_modules: \['qkv'\].*q_proj"):
        T.build_model(_profile(target_modules=["qkv"]).training, 2, "cpu", None)


def test_sweep_runs_are_named_and_deduplicated():
    cfg = _profile(sweeps={"data_fractions": [0.1, 0.5, 1.0], "lora_ranks": [2, 8], "data_mixes": ["refactor"],
                           "seeds": [7]})
    assert [(r.name, r.data_fraction, r.lora_r, r.mix, r.train_seed) for r in T.plan_runs(cfg.training)] == [
        ("main", 1.0, 2, "all", None), ("frac0.1", 0.1, 2, "all", None), ("frac0.5", 0.5, 2, "all", None),
        ("r8", 1.0, 8, "all", None), ("mix-refactor", 1.0, 2, "refactor", None), ("seed7", 1.0, 2, "all", 7)]
    main, mix, seed = T.plan_runs(cfg.training)[0], T.plan_runs(cfg.training)[-2], T.plan_runs(cfg.training)[-1]
    assert not {"mix", "train_seed"} & set(T.run_training_config(cfg.training, main))  # earlier hashes hold
    assert T.run_training_config(cfg.training, mix)["mix"] == "refactor"
    assert T.run_training_config(cfg.training, seed)["train_seed"] == 7


@pytest.mark.slow
def test_seed_run_trains_main_examples_from_another_start(toy, tmp_path, smollm_dir):
    """A seed run (``sweeps.seeds``) measures run-to-run spread: main's examples (the subset is drawn with
    the profile's seed) in another order from another initialization - so its weights differ from main's."""
    from safetensors.torch import load_file

    cfg = _profile(max_steps=1, eval_every_steps=1, save_every_steps=1, max_train_examples=5,
                   sweeps={"data_fractions": [], "data_mixes": [], "seeds": [7]})
    index = T.train_all(cfg, tmp_path, toy)
    main, seed = index["runs"]
    assert (seed["name"], seed["train_seed"], main["train_seed"]) == ("seed7", 7, None)
    assert (seed["train_examples"], seed["train_tokens"]) == (main["train_examples"], main["train_tokens"])
    w_main, w_seed = (load_file(str(tmp_path / r["adapter"] / "adapter_model.safetensors")) for r in index["runs"])
    assert w_main.keys() == w_seed.keys()
    assert any(not torch.equal(w_main[k], w_seed[k]) for k in w_main)


@pytest.mark.slow
def test_sweep_runs_leave_no_model_behind(toy, tmp_path, smollm_dir):
    """Each run's model is freed before the next: accelerate's prepare() keeps a reference to every model
    it wrapped, so a 5-run sweep held five models (RSS +0.5 GiB a run) until train_all freed them."""
    import gc

    from accelerate import Accelerator
    from peft import PeftModel

    acc = Accelerator(cpu=True)
    cfg = _profile(max_steps=1, eval_every_steps=1, save_every_steps=1,
                   sweeps={"data_fractions": [], "lora_ranks": [4], "data_mixes": []})
    index = T.train_all(cfg, tmp_path, toy, accelerator=acc)
    assert [r["name"] for r in index["runs"]] == ["main", "r4"]
    gc.collect()
    assert acc._models == [] and not [o for o in gc.get_objects() if isinstance(o, PeftModel)]


def test_edit_tokens_are_marked_and_weighted(tok):
    """Only the tokens that differ from the input are marked (not the fence, not the copied lines, not
    EOS); the loss with edit_token_weight counts each of them that many times."""
    inp = "def f(xs, s):\n    out = []\n    for x in xs:\n        if x.endswith(s):\n            out.append(x)\n    return out\n"
    ex = T.encode_example(tok, "chat_v1", "Invert the test.", inp, inp.replace("if x", "if not x"), 512)
    marked = [tok.decode([i]) for i, m in zip(ex["input_ids"], ex["edit_mask"], strict=True) if m]
    assert marked == [" not"]
    b1, b5 = T.collate([ex], tok.pad_token_id), T.collate([ex], tok.pad_token_id, edit_weight=5.0)
    assert "weights" not in b1
    assert T._label_weight(b5) == T._label_weight(b1) + 4


def test_behaviour_flag_splits_the_data_mix():
    assert T.is_behaviour_edit({"meta": '{"behaviour_change": true, "kind": "ignore_case"}'})
    assert not T.is_behaviour_edit({"meta": {"behaviour_change": False}})
    assert not T.is_behaviour_edit({"meta": "not json"}) and not T.is_behaviour_edit({})


def test_train_layers_limits_adapters_to_the_top_layers(smollm_dir):
    """LoRA on the top 2 layers only: no adapter below them, so backward stops there."""
    model = T.build_model(_profile(train_layers=2).training, 2, "cpu", None)
    n = model.config.num_hidden_layers
    layers = {int(name.split(".layers.")[1].split(".")[0]) for name, p in model.named_parameters()
              if p.requires_grad}
    assert layers == {n - 2, n - 1}


def test_trained_weights_that_do_not_fit_are_named(tmp_path, smollm_dir):
    from safetensors.torch import save_file

    assert not is_trained_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a LoRA adapter"):
        load_trained(load_model(MODEL), tmp_path)
    save_file({"model.norm.weight": torch.ones(3), "model.layers.0.extra": torch.ones(2)},
              str(tmp_path / TRAINED_WEIGHTS))
    assert is_trained_dir(tmp_path)
    with pytest.raises(ValueError, match=r"2 trained weights do not fit the base model.*model.norm.weight"):
        load_trained(load_model(MODEL), tmp_path)


@pytest.mark.slow
def test_one_phrasing_run_trains_the_main_runs_examples_rephrased(tmp_path, tok):
    """Mix ``one_phrasing``: the examples main trains on (same ids, same code), each instruction said in
    its edit's first phrasing - the phrasing ablation changes the wording and nothing else."""
    import json

    from datasets import Dataset, DatasetDict

    from instructcoder_utils.config import SynthConfig
    from instructcoder_utils.synth import one_phrasing, synthesize

    records, _ = synthesize(SynthConfig(max_instances=24, program_share=1.0, workers=1), seed=3)
    rows = [{**r, "meta": json.dumps(r["meta"])} for r in records]
    ds = DatasetDict(train=Dataset.from_list(rows[:20]), validation=Dataset.from_list(rows[20:]))
    main_tok, _ = T.tokenize_splits(ds, tok, "chat_v1", 512, tmp_path / "cache")
    one = T.rewritten_split(ds, "one_phrasing", tok, "chat_v1", 512, tmp_path / "cache")
    ids = main_tok["train"]["id"][::2]
    picked = T.same_examples(one, ids, "mix-one_phrasing")
    assert picked["id"] == ids
    by_id = {r["id"]: r for r in rows}
    for row in picked:
        r = by_id[row["id"]]
        want = T.encode_example(tok, "chat_v1", one_phrasing(r), r["input"], r["output"], 512)
        assert row["input_ids"] == want["input_ids"]
    assert sum(one_phrasing(by_id[i]) != by_id[i]["instruction"] for i in ids) >= len(ids) // 2

    cfg = _profile(max_steps=1, eval_every_steps=1, save_every_steps=1, max_length=512, max_train_examples=6,
                   sweeps={"data_fractions": [], "lora_ranks": [], "data_mixes": ["one_phrasing", "one_scenario"]})
    main, phrased, placed = T.train_all(cfg, tmp_path, ds)["runs"]
    assert [r["name"] for r in (phrased, placed)] == ["mix-one_phrasing", "mix-one_scenario"]
    assert phrased["train_examples"] == placed["train_examples"] == main["train_examples"]
    assert len({r["train_tokens"] for r in (main, phrased, placed)}) == 3  # the same examples, other words


@pytest.mark.parametrize("method", ["lora", "full"])
def test_load_trained_scale_moves_the_weights_part_of_the_way(tmp_path, method, smollm_dir):
    """``scale`` (evaluation.interpolations): 0 gives the base model, 1 the trained one, and 0.5 every
    trained weight half way between them, for a LoRA adapter and for fully trained weights alike."""
    base = load_model(MODEL)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(load_model(MODEL), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)  # peft starts B at zero: give the adapter something to add
        peft_model.save_pretrained(tmp_path)
        key = "model.layers.3.self_attn.q_proj.weight"
    else:
        from safetensors.torch import save_file

        key = "model.layers.3.mlp.up_proj.weight"
        w = base.state_dict()[key]
        save_file({key: w + torch.randn_like(w) * 0.05}, str(tmp_path / TRAINED_WEIGHTS))
    w0 = base.state_dict()[key]
    got = {s: load_trained(load_model(MODEL), tmp_path, scale=s).state_dict()[key] for s in (0.0, 0.5, 1.0)}
    assert torch.allclose(got[0.0], w0, atol=1e-6)
    assert float((got[1.0] - w0).abs().max()) > 1e-3  # the trained weights differ from the base model's
    assert torch.allclose(got[0.5], w0 + 0.5 * (got[1.0] - w0), atol=1e-6)
