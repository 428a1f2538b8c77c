"""The book as a reader gets it: chapter layout and stored outputs (reads the notebooks' JSON only), and the
checks that stop `make render`/`make book` when the vendored JavaScript is missing."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
# About 87 characters fit in the book's code column on a wide screen; ruff's default line length.
MAX_LINE = 88


def _cells(path: Path, cell_type: str) -> list[tuple[int, str, dict]]:
    """(cell number from 1, source, cell) for the cells of one type."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(n, "".join(c["source"]), c) for n, c in enumerate(cells, 1) if c["cell_type"] == cell_type]


def _strings(value):
    """Every string inside an output's JSON, except images (base64)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not key.startswith("image/"):
                yield from _strings(item)


# Figures are drawn at most 9 inches wide at 150 dpi (minibert.viz.BOOK_DPI): 1,350 px, plus the few pixels
# matplotlib's tight bounding box adds for labels. Wider figures are scaled down and their text shrinks.
MAX_FIGURE_PX = 1400


def _png_size(data: str) -> tuple[int, int]:
    import base64
    import struct

    header = base64.b64decode(data[:64])
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_figures_fit_the_column(path):
    wide = [(n, _png_size(out["data"]["image/png"])) for n, _, cell in _cells(path, "code")
            for out in cell.get("outputs", []) if "image/png" in out.get("data", {})
            if _png_size(out["data"]["image/png"])[0] > MAX_FIGURE_PX]
    assert not wide, f"{path.name}: figures wider than {MAX_FIGURE_PX} px (cell, (width, height)): {wide}"


def test_there_are_chapters():
    assert len(CHAPTERS) >= 11, [p.name for p in CHAPTERS]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_lines_fit_the_column(path):
    long = [
        f"cell {n} line {i}: {len(line)} chars"
        for n, src, _ in _cells(path, "code")
        for i, line in enumerate(src.splitlines(), 1)
        if len(line) > MAX_LINE
    ]
    assert not long, f"{path.name}: {len(long)} code lines over {MAX_LINE} characters: " + "; ".join(long[:10])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_ends_with_summary_and_exercises(path):
    headings = [
        line[3:].strip()
        for _, src, _ in _cells(path, "markdown")
        for line in src.splitlines()
        if line.startswith("## ")
    ]
    assert headings[-2:] == ["Summary", "Exercises"], f"{path.name}: last sections {headings[-2:]}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_nbval_comments_in_code(path):
    # A reader sees the code: nbval's markers go in cell tags (nbval-ignore-output, nbval-skip, ...).
    marked = [n for n, src, _ in _cells(path, "code") if "NBVAL_" in src]
    assert not marked, f"{path.name}: cells {marked} contain an NBVAL_ comment; use the nbval cell tags"


def _machine_paths() -> dict[str, str]:
    """Absolute paths of this machine that a stored output must not show, each with a trailing separator."""
    paths = {
        "the checkout": ROOT,
        "the folder holding the checkout": ROOT.parent,
        "the home folder": Path.home(),
        "the temp folder": Path(tempfile.gettempdir()).resolve(),
        "the Python environment": Path(sys.prefix).resolve(),
    }
    if os.environ.get("MINIBERT_DATA"):
        paths["the data folder"] = Path(os.environ["MINIBERT_DATA"]).resolve()
    # A folder at the root of the file system ("/", "/tmp") is still specific; "/" itself is not.
    return {what: str(p).rstrip(os.sep) + os.sep for what, p in paths.items() if p != Path(p.anchor)}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_outputs_show_no_machine_paths(path):
    found = [
        f"cell {n} shows {what} ({prefix})"
        for n, _, cell in _cells(path, "code")
        for text in _strings(cell.get("outputs", []))
        for what, prefix in _machine_paths().items()
        if prefix in text
    ]
    assert not found, f"{path.name}: " + "; ".join(sorted(set(found)))


# --- make render / make book: the vendored JavaScript ------------------------------------------------

CHECK = ROOT / "scripts" / "check_assets.py"
FETCH = ROOT / "scripts" / "fetch_assets.sh"


def _vendor(folder: Path, *, mathjax: bool = True) -> Path:
    """A vendor folder as scripts/fetch_assets.sh writes it (tiny stand-in files)."""
    for name in ("d3.min.js", "jquery.min.js", "require.js"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("// js\n")
    if mathjax:
        fonts = folder / "mathjax/output/chtml/fonts/woff-v2"
        fonts.mkdir(parents=True)
        (fonts / "MathJax_Main-Regular.woff").write_bytes(b"wOF2")
        (folder / "mathjax/tex-mml-chtml.js").write_text("// mathjax\n")
    (folder / ".done").touch()
    return folder


def _check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(folder)], capture_output=True, text=True)


def test_check_assets_accepts_a_complete_folder(tmp_path):
    result = _check(_vendor(tmp_path / "vendor"))
    assert (result.returncode, result.stderr) == (0, "")


def test_check_assets_stops_without_mathjax(tmp_path):
    folder = _vendor(tmp_path / "vendor", mathjax=False)
    result = _check(folder)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"check_assets: {folder} is incomplete (missing or empty: "
        "mathjax/tex-mml-chtml.js, mathjax/output/chtml/fonts/woff-v2).\n"
    )
    assert "every formula renders as raw TeX" in result.stderr
    assert "Fix: make clean && make assets" in result.stderr


def test_check_assets_stops_on_an_empty_file_or_a_missing_folder(tmp_path):
    folder = _vendor(tmp_path / "vendor")
    (folder / "mathjax/tex-mml-chtml.js").write_text("")  # an interrupted copy
    result = _check(folder)
    assert result.returncode == 1
    assert "(missing or empty: mathjax/tex-mml-chtml.js)" in result.stderr

    missing = _check(tmp_path / "nowhere")
    assert missing.returncode == 1
    assert "(missing or empty: .done, mathjax/tex-mml-chtml.js, " in missing.stderr


def _tools(folder: Path, names: list[str]) -> Path:
    """A PATH folder holding only the named commands (links to this machine's)."""
    folder.mkdir()
    for name in names:
        real = subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True, text=True).stdout
        (folder / name).symlink_to(real.strip())
    return folder


def _fetch(dest: Path, path: str) -> subprocess.CompletedProcess:
    bash = subprocess.run(["bash", "-c", "command -v bash"], capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "PATH": path}
    return subprocess.run([bash, str(FETCH), str(dest)], capture_output=True, text=True, env=env)


def test_fetch_assets_without_npm_fails_and_keeps_the_old_folder(tmp_path):
    dest = tmp_path / "vendor"
    dest.mkdir()
    (dest / "old.js").write_text("kept")
    result = _fetch(dest, str(_tools(tmp_path / "bin", ["dirname", "mktemp", "rm"])))
    assert result.returncode == 1
    assert "fetch_assets: npm not found; install Node.js and npm, then run make assets again." in result.stderr
    assert "CDN" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "vendor"]
    assert [p.name for p in dest.iterdir()] == ["old.js"]


def test_fetch_assets_with_an_unreachable_registry_fails(tmp_path):
    # A stand-in npm that fails like `npm pack` does when the registry cannot be reached.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = config ]; then echo https://registry.invalid/; exit 0; fi\n'
        "echo 'npm error code ENOTFOUND' >&2; exit 1\n"
    )
    npm.chmod(0o755)
    dest = tmp_path / "vendor"
    result = _fetch(dest, f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert result.returncode == 1
    assert (
        "fetch_assets: could not download mathjax, requirejs, d3 and jquery from https://registry.invalid/"
        in result.stderr
    )
    assert "formulas show as raw TeX, so make render and make book stop" in result.stderr
    assert "CDN" not in result.stderr
    assert not dest.exists() and not (tmp_path / "vendor.partial").exists()
