"""The model zoo: reproducible builds, checked files, complete cards, loadable models."""
import json
import shutil

import pytest
import torch

import sslkit
from sslkit import zoo
from sslkit.cli import main
from sslkit.zoo import extras, files

ENTRY = "simclr_digits"  # the cheapest entry: 8x8 digits
STEPS = 20


def build_cli(out, steps=STEPS):
    assert main(["zoo", "build", ENTRY, "--steps", str(steps), "--threads", "1", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo_a")
    build_cli(out)
    return out


def copy_of(built, tmp_path):
    out = tmp_path / "zoo"
    shutil.copytree(built, out)
    return out


def test_same_seed_same_weights_bit_for_bit(built, tmp_path):
    build_cli(tmp_path)
    a, b = (built / f"{ENTRY}.pt").read_bytes(), (tmp_path / f"{ENTRY}.pt").read_bytes()
    assert a == b
    ca, cb = (json.loads((d / f"{ENTRY}.json").read_text()) for d in (built, tmp_path))
    assert ca["weights"]["sha256"] == cb["weights"]["sha256"]
    assert ca["metrics"] == cb["metrics"] and ca["history"]["loss"] == cb["history"]["loss"]


def test_modified_weights_are_caught_by_sha256(built, tmp_path):
    out = copy_of(built, tmp_path)
    path = out / f"{ENTRY}.pt"
    expected = zoo.card(ENTRY, root=out)["weights"]["sha256"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit in the middle of the tensor data
    path.write_bytes(bytes(data))
    actual = files.sha256(path)
    with pytest.raises(zoo.ZooError) as err:
        zoo.load(ENTRY, root=out)
    msg = str(err.value)
    assert str(path) in msg and expected in msg and actual in msg
    assert f"sslkit zoo build {ENTRY} --out {out}" in msg
    assert main(["zoo", "list", "--out", str(out)]) == 0  # the listing reports it, does not crash


def test_card_fields_are_complete(built):
    c = zoo.card(ENTRY, root=built)
    e = zoo.entry(ENTRY)
    for key in ("name", "purpose", "method", "method_config", "backbone", "data", "steps", "batch_size",
                "lr", "seed", "command", "recipe", "history", "training", "metrics", "weights"):
        assert key in c, key
    assert c["method"] == "simclr" and c["backbone"]["name"] == "convnet"
    assert c["data"]["name"] == "digits" and c["data"]["train_samples"] == 1438
    assert c["steps"] == STEPS and c["recipe_steps"] == e.steps and c["batch_size"] == e.batch_size
    assert c["command"] == f"sslkit zoo build {ENTRY} --steps {STEPS} --threads 1 --device cpu"
    assert c["lr"] == pytest.approx(1e-3) and c["seed"] == 0
    h = c["history"]
    assert h["step"][-1] == STEPS and len(h["loss"]) == len(h["step"]) <= 100
    assert all(isinstance(v, float) for v in h["loss"])
    t = c["training"]
    assert t["seconds"] > 0 and t["device"] == "cpu" and t["threads"] == 1
    assert t["torch"] == torch.__version__ and t["cores"] >= 1 and "cpu" in t
    for probe in ("knn", "linear"):
        row = c["metrics"]["label"][probe]
        assert set(row) == {"model", "random_init", "raw"}
        assert all(0 <= v <= 1 for v in row.values())
    w = c["weights"]
    assert w["file"] == f"{ENTRY}.pt" and len(w["sha256"]) == 64 and w["dtype"] == "float16"
    assert w["bytes"] == (built / w["file"]).stat().st_size


def test_load_gives_eval_mode_method_with_the_stored_fp16_weights(built):
    with pytest.warns(RuntimeWarning, match="quick build"):  # 20 of 2000 steps
        model = zoo.load(ENTRY, device="cpu", root=built)
    assert isinstance(model, sslkit.methods.Method) and model.name == "simclr"
    assert not any(m.training for m in model.modules())
    stored = torch.load(built / f"{ENTRY}.pt", weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, stored[k].to(v.dtype)), k
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    x = sslkit.data.load("digits", "test").batch(torch.arange(8))
    feats = model.embed(x)
    assert feats.shape == (8, model.embed_dim) and torch.isfinite(feats).all()
    assert model.embed(x).equal(feats)  # eval mode: BatchNorm uses running statistics


def test_missing_files_name_the_build_command(tmp_path):
    with pytest.raises(zoo.ZooError, match=f"sslkit zoo build {ENTRY} --out {tmp_path}"):
        zoo.load(ENTRY, root=tmp_path)
    assert zoo.names(built=True, root=tmp_path) == []


def test_missing_weights_with_a_card(built, tmp_path):
    out = copy_of(built, tmp_path)
    (out / f"{ENTRY}.pt").unlink()
    with pytest.raises(zoo.ZooError, match="has no weights.*sslkit zoo build"):
        zoo.load(ENTRY, root=out)


def test_stale_recipe_warns(built, tmp_path):
    out = copy_of(built, tmp_path)
    card = json.loads((out / f"{ENTRY}.json").read_text())
    card["recipe"]["lr"] = 0.5
    (out / f"{ENTRY}.json").write_text(json.dumps(card))
    with pytest.warns(RuntimeWarning, match="another recipe"):
        zoo.load(ENTRY, root=out)


def test_cli_list_and_card(built, capsys):
    assert main(["zoo", "list", "--out", str(built)]) == 0
    out = capsys.readouterr().out
    assert f"{ENTRY}" in out and f"quick build ({STEPS}/" in out and "missing" in out
    assert main(["zoo", "card", ENTRY, "--out", str(built)]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == ENTRY


def test_cli_bad_input_exits_2(capsys):
    for argv in (["zoo", "build"], ["zoo", "build", "nope"], ["zoo", "build", ENTRY, "--steps", "0"]):
        with pytest.raises(SystemExit) as err:
            main(argv)
        assert err.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_quick_mode_refuses_to_build(monkeypatch, tmp_path):
    monkeypatch.setenv("SSLKIT_QUICK", "1")
    with pytest.raises(ValueError, match="SSLKIT_QUICK"):
        zoo.build(ENTRY, steps=2, out=tmp_path)
    assert not list(tmp_path.iterdir())


def test_every_recipe_builds_its_model_and_fits_the_size_budget():
    # all entries together must stay under 30 MB of float16 weights
    total, datasets = 0, {}
    for name in zoo.names():
        e = zoo.entry(name)
        assert e.method in sslkit.method_names(), name
        key = (e.data, json.dumps(e.data_options, sort_keys=True))
        data = datasets[key] = datasets.get(key) or files.load_data(e)
        allowed = {"label", *data.factors}
        assert set(e.targets) <= allowed, (name, e.targets)
        assert set(e.extras) <= set(extras.NAMES), name
        state, _ = files.compact_state(files.create_method(e, data))
        total += sum(v.numel() * v.element_size() for v in state.values())
    assert total < 29e6, f"zoo weights would take {total / 1e6:.1f} MB (budget 30 MB)"
    present = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.glob("*.pt"))
    assert present <= 30e6


def test_raw_text_baseline_is_a_bag_of_tokens():
    from sslkit.zoo.builder import raw_features
    corpus = sslkit.data.load("corpus", "test")
    ids = corpus.tokens[:3]
    bag = raw_features(corpus)(ids)  # (3, V)
    special = set(int(i) for i in corpus.tokenizer.special_ids)
    for row, seq in zip(bag, ids):
        for t in range(corpus.vocab_size):
            expected = 0 if t in special else int((seq == t).sum())
            assert int(row[t]) == expected


@pytest.mark.parametrize("name", zoo.names(built=True))
def test_shipped_entries_are_intact_current_and_complete(name):
    # every entry shipped in sslkit/zoo/weights: sha256 matches, built from today's recipe for its
    # full step count, loads without a warning, and its card carries the baselines
    c = zoo.verify(name)
    assert c["recipe"] == json.loads(json.dumps(zoo.entry(name).recipe())), "stale: rebuild it"
    assert c["steps"] == zoo.entry(name).steps, "a quick build was shipped"
    for target in zoo.entry(name).targets:
        for probe in ("knn", "linear"):
            assert set(c["metrics"][target][probe]) == {"model", "random_init", "raw"}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = zoo.load(name)
    assert not model.training
