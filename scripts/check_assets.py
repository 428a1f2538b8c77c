"""Check that the vendored JavaScript the rendered book needs is complete (used by `make render` and `make book`).

The book serves MathJax, and d3, jQuery and require.js for bertviz's views, from `assets/vendor`
(written by `scripts/fetch_assets.sh`, never committed). Without MathJax Sphinx still builds without a
warning, and every formula shows as raw `\\(...\\)`; so the build stops here instead.

Usage: python scripts/check_assets.py [FOLDER]   (default assets/vendor); exit status 0 when complete,
1 with a message on stderr naming the folder and the missing files.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Paths relative to the vendor folder; each must be a non-empty file (a folder: hold at least one file).
REQUIRED = (
    ".done",
    "mathjax/tex-mml-chtml.js",
    "mathjax/output/chtml/fonts/woff-v2",
    "d3.min.js",
    "jquery.min.js",
    "require.js",
)


def missing_assets(folder: Path) -> list[str]:
    """The entries of REQUIRED that are absent or empty under `folder` (an empty list when complete)."""
    missing = []
    for rel in REQUIRED:
        path = folder / rel
        if path.is_dir():
            ok = any(p.is_file() and p.stat().st_size > 0 for p in path.iterdir())
        else:
            ok = path.is_file() and (rel == ".done" or path.stat().st_size > 0)
        if not ok:
            missing.append(rel)
    return missing


def message(folder: Path, missing: list[str]) -> str:
    """The error printed when `folder` is incomplete."""
    return (
        f"check_assets: {folder} is incomplete (missing or empty: {', '.join(missing)}).\n"
        "The book serves MathJax (and bertviz's d3, jQuery and require.js) from this folder; "
        "without it every formula renders as raw TeX.\n"
        "Fix: make clean && make assets   (scripts/fetch_assets.sh downloads them with npm from the "
        "npm registry)."
    )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: check_assets.py [FOLDER]", file=sys.stderr)
        return 2
    folder = Path(argv[0]) if argv else Path("assets/vendor")
    missing = missing_assets(folder)
    if missing:
        print(message(folder, missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
