"""The shader loader: package lookup, #include, #line mapping in compile errors, file headers."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from renderer.gl_backend import shaders as S

GAUSSIAN_SHADERS = ["gs_common.glsl", "sh.glsl", "gs_project.comp", "radix.comp", "scan.comp", "bin.comp",
                    "bin_rows.comp", "gs_blend.comp"]


@pytest.fixture
def fake_files(monkeypatch):
    """Serve extra in-memory shader files through the loader, falling back to the package."""
    files: dict[str, str] = {}
    real = S.read_shader_file

    def read(name):
        return files[name] if name in files else real(name)

    monkeypatch.setattr(S, "read_shader_file", read)
    return files


def test_loads_from_package_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src, files = S.load_source("gs_project.comp", {"HAS_COVARS": 1})
    assert src.startswith("#version 430\n#define HAS_COVARS 1\n#line 2 0\n")
    assert files == ["gs_project.comp", "gs_common.glsl", "sh.glsl"]
    assert "vec3 eval_sh(" in src and "#include" not in src
    with pytest.raises(FileNotFoundError, match="no_such.comp"):
        S.load_source("no_such.comp")


def test_include_line_directives(fake_files):
    fake_files["t_main.comp"] = '#version 430\n// a\n#include "t_inc.glsl"\nvoid main() {}\n'
    fake_files["t_inc.glsl"] = "// inc\nfloat f() { return 1.0; }\n"
    src, files = S.load_source("t_main.comp")
    assert files == ["t_main.comp", "t_inc.glsl"]
    assert src.splitlines() == ["#version 430", "#line 2 0", "// a", "#line 1 1", "// inc",
                                "float f() { return 1.0; }", "#line 4 0", "void main() {}"]


def test_include_cycle_is_an_error(fake_files):
    fake_files["t_a.comp"] = '#version 430\n#include "t_b.glsl"\n'
    fake_files["t_b.glsl"] = '#include "t_b.glsl"\n'
    with pytest.raises(ValueError, match="cycle"):
        S.load_source("t_a.comp")


def test_compile_error_names_file_and_line(gl_ctx, fake_files):
    fake_files["t_broken.comp"] = ('#version 430\nlayout(local_size_x = 1) in;\n#include "t_ok.glsl"\n'
                                   "void main() {\n    float x = 1.0;\n    x = undefined_thing;\n}\n")
    fake_files["t_ok.glsl"] = "// fine\nfloat ok() { return 1.0; }\n"
    with pytest.raises(S.ShaderCompileError) as e:
        S.compute_shader(gl_ctx, "t_broken.comp")
    msg = str(e.value)
    assert "t_broken.comp" in msg and "undefined_thing" in msg
    assert re.search(r"t_broken\.comp:6\b", msg), msg  # the line inside the file, after the include


def test_error_in_included_file_names_it(gl_ctx, fake_files):
    fake_files["t_main2.comp"] = ('#version 430\nlayout(local_size_x = 1) in;\n#include "t_bad.glsl"\n'
                                  "void main() {}\n")
    fake_files["t_bad.glsl"] = "// line 1\n// line 2\nfloat bad() { return nope; }\n"
    with pytest.raises(S.ShaderCompileError) as e:
        S.compute_shader(gl_ctx, "t_main2.comp")
    assert re.search(r"t_bad\.glsl:3\b", str(e.value)), str(e.value)
    gl_ctx.clear_errors() if hasattr(gl_ctx, "clear_errors") else None


def test_programs_are_cached(gl_ctx):
    a = S.compute_shader(gl_ctx, "scan.comp", {"MODE": 0})
    assert S.compute_shader(gl_ctx, "scan.comp", {"MODE": 0}) is a
    assert S.compute_shader(gl_ctx, "scan.comp", {"MODE": 1}) is not a


def test_map_log_formats():
    files = ["a.comp", "b.glsl"]
    assert S.map_log("0:12(3): error: x", files) == "a.comp:12(3): error: x"
    assert S.map_log("1(7) : error C1008: y", files) == "b.glsl:7 : error C1008: y"


@pytest.mark.parametrize("name", GAUSSIAN_SHADERS)
def test_every_shader_has_a_header(name):
    text = resources.files("shaders").joinpath(name).read_text()
    lines = text.splitlines()
    start = 1 if lines[0].startswith("#version") else 0
    header = []
    for line in lines[start:]:
        if not line.startswith("//"):
            break
        header.append(line)
    head = "\n".join(header)
    assert header and header[0].startswith(f"// {name}:"), f"{name}: header must open with '// {name}: ...'"
    assert "Bindings" in head and "Reference" in head, f"{name}: header must state bindings and references"


def test_loop_cap_is_measured(gl_ctx):
    """loop_cap runs a 100k-iteration loop: None where it completes (Mesa 25, GPUs), else the
    count llvmpipe let through (65535 in Mesa 22, which the loop-cap tests then expect)."""
    from renderer.gl_backend.context import PROBE_ITERATIONS, loop_cap

    cap = loop_cap(gl_ctx)
    assert cap is None or 0 < cap < PROBE_ITERATIONS
    assert loop_cap(gl_ctx) == cap  # measured once per implementation
    version = str(gl_ctx.info.get("GL_VERSION", ""))
    if "llvmpipe" in str(gl_ctx.info.get("GL_RENDERER", "")) and re.search(r"Mesa 22\.", version):
        assert cap == 65535
