"""Render a still (.png) or a video (.mp4) of a scene, headless.

    radview render scene.ply -o orbit.mp4 --frames 120 --size 960x540
    radview render scene.ply -o still.png --path camera_path.json
    radview render dynamic.ply -o t.mp4 --time-range 0 1

The default path is an orbit around `up` (the scene's, or estimate_up's) that keeps the
scene's bounds in view. A camera path file is a nerfstudio camera_path.json or a Radview
keyframe path (renderer/camera_paths.py); its size, fps and render_time are used unless
--size / --fps say otherwise (--frames resamples it along a spline). Time per frame: the
path's render_time when it has one, else --time-range A B (linear over the frames), else
--time T, else 0. Frames are written as the renderer returns them (linear values, no sRGB
curve), like the 3DGS tools do.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from .cli import UsageError

MODES = ("rgb", "depth", "alpha")
ANTIALIAS = ("classic", "mip")
BACKENDS = ("torch", "gl")
DEFAULT_SIZE = (960, 540)
DEFAULT_FRAMES = 120  # 4 s at 30 fps
DEFAULT_FPS = 30.0
DEFAULT_FOV = 50.0
MAX_SIDE = 16384


def add_arguments(parser) -> None:
    # Values are parsed in run() (not by argparse types) so bad input gets one line on stderr.
    parser.add_argument("scene", metavar="PATH", help="scene file or folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file: .png (one frame) or .mp4")
    parser.add_argument("--size", metavar="WxH",
                        help="image size (default: the camera path's, "
                             f"else {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    parser.add_argument("--frames", metavar="N",
                        help=f"frames in the video (default: the camera path's, else {DEFAULT_FRAMES})")
    parser.add_argument("--fps", metavar="F",
                        help="frames per second of the video (default: the camera path's, else 30); "
                             "a flipbook (folder of per-frame PLYs) also plays at this rate")
    parser.add_argument("--path", dest="camera_path", default="orbit", metavar="orbit|FILE.json",
                        help="camera path: an orbit around the scene (default) or a camera path file")
    parser.add_argument("--backend", metavar="torch|gl",
                        help="renderer (default: gl where an OpenGL 4.3 context can be made, else torch)")
    parser.add_argument("--background", default="0,0,0", metavar="R,G,B",
                        help="background colour, three numbers in [0, 1] (default 0,0,0)")
    parser.add_argument("--mode", default="rgb", metavar="|".join(MODES), help="what to render (default rgb)")
    parser.add_argument("--sh-degree", metavar="D", help="cap on the spherical-harmonics degree (0-3)")
    parser.add_argument("--antialias", default="classic", metavar="|".join(ANTIALIAS),
                        help="classic (+0.3 px dilation, as INRIA 3DGS) or mip (Mip-Splatting 2D filter)")
    parser.add_argument("--fov", metavar="DEG",
                        help=f"vertical field of view in degrees (orbit default {DEFAULT_FOV:g})")
    parser.add_argument("--time", metavar="T", help="scene time in seconds (4D scenes)")
    parser.add_argument("--time-range", nargs=2, metavar=("A", "B"),
                        help="animate the scene time from A to B over the video's frames")
    parser.add_argument("--time-duration", nargs=2, metavar=("T0", "T1"),
                        help="time span a 4D checkpoint was trained on (Yang et al. 4DGS: sets the "
                             "colour's period; read from a .yaml beside the checkpoint when left out)")


# ----------------------------------------------------------------------------- parsing


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m:
        raise UsageError(f"--size must look like WIDTHxHEIGHT (e.g. 640x480), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise UsageError(f"--size {w}x{h}: each side must be between 1 and {MAX_SIDE} pixels")
    return w, h


def _float(text: str, what: str, lo: float = -math.inf, hi: float = math.inf, open_lo: bool = False) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(v) or v > hi or v < lo or (open_lo and v == lo):
        raise UsageError(f"{what} must be {'above' if open_lo else 'at least'} {lo:g}"
                         + (f" and at most {hi:g}" if hi < math.inf else "") + f", got {text!r}")
    return v


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a whole number, got {text!r}") from None
    if not lo <= v <= hi:
        raise UsageError(f"{what} must be between {lo} and {hi}, got {v}")
    return v


def parse_background(text: str) -> tuple[float, float, float]:
    parts = [p for p in re.split(r"[,\s]+", (text or "").strip()) if p]
    if len(parts) != 3:
        raise UsageError(f"--background must be three numbers R,G,B in [0, 1], got {text!r}")
    return tuple(_float(p, "--background values", 0.0, 1.0) for p in parts)  # type: ignore[return-value]


def parse_time_duration(values) -> tuple[float, float] | None:
    """--time-duration T0 T1 -> (t0, t1) with t0 < t1, or None when not given."""
    if not values:
        return None
    t0, t1 = (_float(v, "--time-duration") for v in values)
    if not t1 > t0:
        raise UsageError(f"--time-duration T0 T1 needs T0 < T1, got {t0:g} {t1:g}")
    return t0, t1


def _choice(text: str, what: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}; got {text!r}")
    return text


# ----------------------------------------------------------------------------- backend


def gl_status() -> tuple[bool, str]:
    """(usable, reason) for the GL backend; never raises."""
    try:
        from renderer.gl_backend import gl_available
    except ImportError:
        return False, "the GL backend is not installed"
    try:
        ok, reason = gl_available()
    except Exception as e:  # noqa: BLE001 - any failure means "no GL here"
        return False, f"{type(e).__name__}: {e}"
    return bool(ok), str(reason or "")


def _torch_renderer():
    import torch

    from renderer import get_renderer

    return get_renderer("torch", device="cuda" if torch.cuda.is_available() else "cpu")


def choose_renderer(name: str | None, scene):
    """The renderer the user asked for, or gl with a fallback to torch (one notice on stderr)."""
    from renderer import get_renderer

    if name == "torch":
        r = _torch_renderer()
    elif name == "gl":
        ok, reason = gl_status()
        if not ok:
            raise UsageError(f"the gl backend is not available here ({reason}); try --backend torch")
        try:
            r = get_renderer("gl", count_blends=False)  # a video needs no blend counts
        except Exception as e:  # noqa: BLE001 - context creation failures come in many types
            raise UsageError(f"the gl backend could not start ({e}); try --backend torch") from None
    else:
        ok, reason = gl_status()
        r = None
        if ok:
            try:
                r = get_renderer("gl", count_blends=False)
                if not r.supports(scene):
                    reason, r = f"it cannot render a {getattr(scene, 'kind', '?')} scene", None
                elif r.prefers_torch(scene):
                    reason, r = "torch renders this scene faster on a software OpenGL", None
            except Exception as e:  # noqa: BLE001
                reason = f"it could not start: {e}"
        if r is None:
            print(f"radview render: OpenGL backend unavailable ({reason}); using the torch backend",
                  file=sys.stderr)
            r = _torch_renderer()
    if not r.supports(scene):
        raise UsageError(f"the {r.name} backend cannot render a {getattr(scene, 'kind', '?')} scene")
    return r


# ----------------------------------------------------------------------------- run


def run(args) -> int:
    from renderer import RenderSettings
    from renderer.camera_paths import estimate_up, interpolate, orbit, read_camera_path, resize_cameras
    from renderer.conventions import focal_from_fov
    from renderer.video import VideoWriter, write_png
    from scenes import load_scene

    from .progress import Progress

    # Everything that can be checked without the scene is checked first: bad input fails fast.
    out = Path(args.output)
    ext = out.suffix.lower()
    if ext not in (".png", ".mp4"):
        raise UsageError(f"{out}: the output must end in .png (one frame) or .mp4 (video), "
                         f"not {ext or 'nothing'!r}")
    if not out.parent.is_dir():
        raise UsageError(f"{out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise UsageError(f"{out} is a folder")
    video = ext == ".mp4"
    size = parse_size(args.size) if args.size is not None else None
    n_frames = _int(args.frames, "--frames", 1, 1_000_000) if args.frames is not None else None
    if not video and n_frames not in (None, 1):
        raise UsageError(f"a .png holds one frame; write an .mp4 for --frames {n_frames}")
    fps = _float(args.fps, "--fps", 0.0, 1000.0, open_lo=True) if args.fps is not None else None
    fov = _float(args.fov, "--fov", 0.0, 179.0, open_lo=True) if args.fov is not None else None
    background = parse_background(args.background)
    mode = _choice(args.mode, "--mode", MODES)
    antialias = _choice(args.antialias, "--antialias", ANTIALIAS)
    backend = _choice(args.backend, "--backend", BACKENDS) if args.backend is not None else None
    sh_degree = _int(args.sh_degree, "--sh-degree", 0, 3) if args.sh_degree is not None else None
    t_still = _float(args.time, "--time") if args.time is not None else None
    t_range = tuple(_float(v, "--time-range") for v in args.time_range) if args.time_range else None
    t_duration = parse_time_duration(args.time_duration)

    path = None
    if args.camera_path != "orbit":
        if not Path(args.camera_path).is_file():
            raise UsageError(f"--path must be 'orbit' or a camera path file; "
                             f"{args.camera_path} does not exist")
        try:
            path = read_camera_path(args.camera_path)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if size is None:
        size = (path.width, path.height) if path is not None else DEFAULT_SIZE
    width, height = size
    if video and (width % 2 or height % 2):
        raise UsageError(f"an .mp4 (H.264, yuv420p) needs an even width and height, got {width}x{height}; "
                         "pass --size with even numbers")
    fps = fps or (path.fps if path is not None else DEFAULT_FPS)
    if not video:
        n_frames = 1

    # Reader options go to the formats that take them (flipbook fps, 4D checkpoints' time span).
    scene = load_scene(args.scene, fps=fps if args.fps is not None else None,
                       time_duration=t_duration)  # SceneLoadError -> exit 2 with one line (app/cli.py)
    renderer = choose_renderer(backend, scene)
    device = getattr(renderer, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu" and hasattr(scene, "to"):
        scene = scene.to(device)  # once, not a host-to-device copy per frame

    # Cameras, one per frame.
    if path is None:
        n = n_frames or DEFAULT_FRAMES
        cams = orbit(scene.bounds(), estimate_up(scene), n, width, height, fov_y_deg=fov or DEFAULT_FOV)
    else:
        cams = path.cameras
        if n_frames is not None and n_frames != len(cams):
            cams = interpolate(cams, n_frames) if video else cams[:1]
        cams = resize_cameras(cams, width, height)
        if fov is not None:
            f = focal_from_fov(fov, height)
            cams = [replace(c, fx=f, fy=f) for c in cams]
    n = len(cams)

    # Time per frame: the path's own times win, then --time-range, then --time.
    if path is not None and path.has_time:
        times = [c.time for c in cams]
    elif t_range is not None:
        a, b = t_range
        times = [a + (b - a) * (i / (n - 1) if n > 1 else 0.0) for i in range(n)]
    else:
        times = [t_still or 0.0] * n
    base = RenderSettings(mode=mode, background=background, sh_degree=sh_degree, antialias=antialias)

    # The video starts with its first frame: a failure before it leaves no broken file behind.
    writer: VideoWriter | None = None
    # 8-bit colour straight from the renderer where it offers that (GL: no depth, no float read-back).
    rgb8 = getattr(renderer, "render_rgb8", None) or (lambda *a: renderer.render(*a).to_uint8())
    t0 = time.perf_counter()
    bar = Progress(n, desc="render", unit="frame")
    try:
        for cam, t in zip(cams, times, strict=True):
            try:
                img = rgb8(scene, replace(cam, time=t), replace(base, time=t))
            except (ValueError, NotImplementedError) as e:
                raise UsageError(f"the {renderer.name} backend cannot render this: {e}") from None
            if not video:
                write_png(out, img)
            else:
                if writer is None:
                    writer = VideoWriter(out, fps, width, height)
                writer.write(img)
            bar.update()
    except KeyboardInterrupt:
        bar.close(final_line=False)
        kept = f"; {out} holds the {bar.done} written" if writer is not None else ""
        print(f"radview render: cancelled after {bar.done}/{n} frames{kept}", file=sys.stderr)
        return 130
    except BaseException:
        bar.close(final_line=False)
        raise
    finally:
        if writer is not None:
            writer.close()  # finishes the file, so the frames written so far play
        release = getattr(renderer, "release", None)
        if callable(release):
            release()  # the GL backend's context and buffers
    dt = time.perf_counter() - t0
    bar.summary = (f"radview render: wrote {out} ({n} frame{'s' if n != 1 else ''}, {width}x{height}, "
                   f"{renderer.name} backend, {dt:.1f} s, {n / dt if dt > 0 else 0:.2f} frames/s)")
    bar.close()
    return 0

