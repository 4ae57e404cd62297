"""`radview info`: text and --json on a saved tiny scene and on the shared real INRIA PLY."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import random_gaussians, shared_file

from app.cli import main
from app.cmd_info import describe

JSON_KEYS = {"kind", "format", "count", "sh_degree", "bounds"}
REAL_PLY = "3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply"


@pytest.fixture(scope="module")
def tiny_ply(tmp_path_factory):
    from scenes import save_scene

    scene = random_gaussians(200, seed=1, sh_degree=2, log_scale=-3.0)
    p = tmp_path_factory.mktemp("info") / "tiny.ply"
    try:
        save_scene(scene, p)
    except ValueError as e:  # the INRIA PLY writer (scenes/formats/ply_3dgs.py) is not in this tree
        pytest.skip(f"cannot save an INRIA PLY here: {e}")
    return p, scene


def test_info_text(tiny_ply, capsys):
    p, _ = tiny_ply
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    assert lines["kind"].strip() == "gaussians"
    assert lines["count"].strip() == "200"
    assert lines["sh_degree"].strip() == "2"
    assert lines["format"].strip() == "ply_3dgs"
    assert "min (" in lines["bounds"] and "max (" in lines["bounds"]


def test_info_json(tiny_ply, capsys):
    p, scene = tiny_ply
    assert main(["info", str(p), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == JSON_KEYS
    assert info["kind"] == "gaussians" and info["format"] == "ply_3dgs"
    assert info["count"] == 200 and info["sh_degree"] == 2
    np.testing.assert_allclose(info["bounds"], scene.bounds(), rtol=1e-5, atol=1e-6)


def test_info_real_file(capsys):
    p = shared_file(REAL_PLY)
    assert main(["info", str(p), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == JSON_KEYS
    assert (info["kind"], info["format"]) == ("gaussians", "ply_3dgs")
    assert (info["count"], info["sh_degree"]) == (9080, 3)
    lo, hi = np.array(info["bounds"])
    assert lo.shape == (3,) and (hi > lo).all()
    assert main(["info", str(p)]) == 0
    assert "9,080" in capsys.readouterr().out


def test_info_missing_file(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.ply")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


def test_describe_other_kinds():
    class Voxels:  # a scene kind with len() and bounds() but no SH
        kind = "voxels"
        meta = {"format": "dvgo"}

        def __len__(self):
            return 4096

        def bounds(self):
            return np.array([[0, 0, 0], [1, 2, 3]])

    info = describe(Voxels())
    assert info == {"kind": "voxels", "format": "dvgo", "count": 4096, "sh_degree": None,
                    "bounds": [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]}
    from app.cmd_info import format_text

    text = format_text(info, "grid")
    assert "sh_degree" not in text and "4,096" in text


# ------------------------------------------------------------------ 4D scenes: time range, reader options


def test_info_4d_time_range_and_time_duration(tmp_path, capsys):
    from test_formats_4d import save_yang_ckpt, yang_capture

    p = tmp_path / "chkpnt30000.pth"
    save_yang_ckpt(p, yang_capture())
    assert main(["info", str(p), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == JSON_KEYS | {"time_range"} and info["kind"] == "gaussians4d"
    assert info["time_range"] == [0.0, 10.0]  # guessed from the Gaussians' times (N3V range)
    assert main(["info", str(p), "--json", "--time-duration", "0", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["time_range"] == [0.0, 2.0]
    assert main(["info", str(p), "--time-duration", "-1", "3"]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["time_range"].strip() == "-1 to 3 s"
    assert main(["info", str(p), "--time-duration", "2", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--time-duration" in err[0]


def test_info_flipbook_fps(tmp_path, capsys):
    from scenes import save_scene

    for i in range(3):
        save_scene(random_gaussians(50, seed=i), tmp_path / f"frame_{i:03d}.ply")
    assert main(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "flipbook" and info["time_range"] == [0.0, 0.1]  # 3 frames at 30 fps
    assert main(["info", str(tmp_path), "--json", "--fps", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["time_range"] == pytest.approx([0.0, 0.3])
    # A reader option a format does not take is ignored: a plain PLY still loads.
    assert main(["info", str(tmp_path / "frame_000.ply"), "--json", "--fps", "10"]) == 0
    assert "time_range" not in json.loads(capsys.readouterr().out)
    assert main(["info", str(tmp_path), "--fps", "0"]) == 2
