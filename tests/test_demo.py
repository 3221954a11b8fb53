"""`sslkit demo` in quick mode: it trains, prints the table for every row and budget, saves the plot."""
import pytest

from sslkit import demo


def test_demo_quick_prints_table_and_saves_plot(tmp_path, capsys):
    assert demo.main(["--quick", "--runs-dir", str(tmp_path), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for row in ("raw pixels", "random init", "simclr ("):
        assert row in out
    for col in ("1 / class", "5 / class", "10 / class", "all labels"):
        assert col in out
    assert "over 2 seeds" in out
    png = tmp_path / "demo" / "label_efficiency.png"
    assert f"plot saved to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_run_returns_result_with_every_budget(tmp_path):
    cfg = demo.DemoConfig(quick=True, runs_dir=str(tmp_path), progress=False, device="cpu",
                          seeds=1, labels_per_class=(1, None), probe="knn")
    result, path = demo.run(cfg)
    assert path.exists()
    assert len(result.scores) == 3
    for row in result.scores.values():
        assert set(row) == {"1", "all"} and all(0.0 <= a <= 1.0 for accs in row.values() for a in accs)


def test_demo_bad_arguments():
    with pytest.raises(ValueError, match="probe"):
        demo.main(["--quick"], probe="svm")
    with pytest.raises(ValueError, match="override"):
        demo.main(["--quick"], colour="red")
    with pytest.raises(ValueError, match="minutes"):
        demo.main(["--minutes", "-1"])
    with pytest.raises(ValueError, match="seeds"):
        demo.main(["--seeds", "0"])


def test_build_method_applies_dataset_settings():
    import sslkit

    shapes = sslkit.data.load("shapes", "train", n=8)
    method = demo.build_method("simclr", shapes, demo.SETTINGS["shapes"])
    assert method.backbone.embed_dim == demo.SETTINGS["shapes"].widths[-1]
    assert method.config.views.hue == 0.5 and method.config.views.scale == (0.25, 1.0)
    digits = sslkit.data.load("digits", "train")
    assert demo.build_method("simclr", digits, demo.SETTINGS["digits"]).config.views == "auto"
