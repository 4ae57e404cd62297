"""`radview bench` runs in-process and writes the numbers it prints."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from renderer.bench import parse_resolution, parse_size, synthetic_gaussians


def test_bench_writes_json(tmp_path, capsys, gl_ctx):
    out = tmp_path / "out.json"
    rc = main(["bench", "--sizes", "2k", "--resolution", "128x96", "--frames", "2", "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "synthetic-2000" in table and "blend" in table
    report = json.loads(out.read_text())
    assert report["config"]["resolution"] == [128, 96]
    rows = {r["backend"]: r for r in report["results"]}
    assert set(rows) == {"gl", "torch"}
    for name, r in rows.items():
        assert r["n"] == 2000 and len(r["frames_ms"]) == 2
        assert r["min_ms"] <= r["median_ms"]
        assert r["draw_ms"] > 0  # the stages but the read-back (test_draw_time_leaves_out_the_read_back)
        assert {"project", "sort", "bin", "blend"} <= set(r["stages_ms"])
        assert {"visible", "tile_pairs"} <= set(r["counters"])
        other = "torch" if name == "gl" else "gl"
        assert r["speedup_vs"][other] > 0
    assert "readback" in rows["gl"]["stages_ms"]
    assert "blended_samples" in rows["gl"]["counters"] and "blended_pairs" in rows["torch"]["counters"]


@pytest.mark.parametrize("args,msg", [
    (["--sizes", "ten"], "not a count"),
    (["--resolution", "800"], "not a resolution"),
    (["--backends", "vulkan"], "unknown backend"),
])
def test_bad_input_exits_2(capsys, args, msg):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_parsers_and_generator():
    assert parse_size("10k") == 10_000 and parse_size("1M") == 1_000_000 and parse_size("2500") == 2500
    assert parse_resolution("800x600") == (800, 600)
    from conftest import random_gaussians

    a, b = synthetic_gaussians(50, seed=4), random_gaussians(50, seed=4)
    for name in ("means", "quats", "scales", "opacities", "sh"):
        assert (getattr(a, name) == getattr(b, name)).all()


def test_backends_take_turns_and_ratios_are_per_round():
    """measure() warms each renderer up, then times one frame of each per round; a speed-up is the
    median of the per-round ratios (a machine that slows down mid-run slows both alike)."""
    import time as _time

    from renderer.bench import measure
    from renderer.types import Frame, FrameStats

    calls = []

    class Fake:
        def __init__(self, name, ms):
            self.name, self.ms = name, ms

        def render(self, scene, camera, settings):
            calls.append(self.name)
            # Round 2 runs "slow": both backends take 3x as long, their ratio stays 2.
            slow = 3.0 if calls.count(self.name) == 3 else 1.0
            _time.sleep(self.ms * slow / 1e3)
            return Frame(rgb=None, alpha=None, stats=FrameStats({"blend": self.ms}, {"visible": 1}))

    out = measure({"a": Fake("a", 20), "b": Fake("b", 40)}, {"a": None, "b": None}, None, None,
                  frames=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert out["a"]["speedup_vs"]["b"] == pytest.approx(2.0, rel=0.25)
    assert out["b"]["speedup_vs"]["a"] == pytest.approx(0.5, rel=0.25)
    assert len(out["a"]["frames_ms"]) == 3 and out["a"]["stages_ms"]["blend"] == 20
    assert out["a"]["draw_ms"] == 20 and out["b"]["draw_ms"] == 40


def test_draw_time_leaves_out_the_read_back():
    from renderer.bench import draw_ms

    stages = {"project": 1.0, "sort": 2.0, "bin": 3.0, "blend": 4.0, "readback": 50.0, "upload": 9.0}
    assert draw_ms(stages) == 10.0
