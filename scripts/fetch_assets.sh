#!/usr/bin/env bash
# Fetch the JavaScript the rendered book needs offline (MathJax, and require.js, d3 and jQuery for
# bertviz) from the npm registry into $1 (default assets/vendor). Nothing here is committed.
# The files are assembled in $1.partial and swap in whole, with the stamp $1/.done last, only once
# scripts/check_assets.py finds them complete; any failure exits non-zero and leaves $1 as it was.
set -euo pipefail
dest=${1:-assets/vendor}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stage="$dest.partial"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$stage"' EXIT
fail() {
  echo "fetch_assets: $1" >&2
  echo "fetch_assets: without these files the book's formulas show as raw TeX, so make render and" \
    "make book stop; nothing was written to $dest." >&2
  exit 1
}
command -v npm >/dev/null || fail "npm not found; install Node.js and npm, then run make assets again."
registry=$(npm config get registry 2>/dev/null || echo "the npm registry")
if ! (cd "$tmp" && npm pack --loglevel=error mathjax@3.2.2 requirejs@2.3.6 d3@5.7.0 jquery@2.2.4 >/dev/null); then
  fail "could not download mathjax, requirejs, d3 and jquery from $registry (npm's messages above);
fetch_assets: check the network, or point npm at a reachable mirror (npm config set registry URL)."
fi
for t in "$tmp"/*.tgz; do mkdir -p "${t%.tgz}" && tar -xzf "$t" -C "${t%.tgz}"; done
mj="$tmp"/mathjax-3.2.2/package/es5
rm -rf "$stage"
mkdir -p "$stage/mathjax/output/chtml/fonts"
cp "$mj/tex-mml-chtml.js" "$stage/mathjax/"
cp -r "$mj/output/chtml/fonts/woff-v2" "$stage/mathjax/output/chtml/fonts/"
cp "$tmp"/requirejs-2.3.6/package/require.js "$stage/require.js"
cp "$tmp"/d3-5.7.0/package/dist/d3.min.js "$stage/d3.min.js"
cp "$tmp"/jquery-2.2.4/package/dist/jquery.min.js "$stage/jquery.min.js"
touch "$stage/.done"
python3 "$here/check_assets.py" "$stage" || fail "the downloaded packages lack files the book needs."
rm -rf "$dest"
mv "$stage" "$dest"
echo "fetch_assets: wrote $(du -sh "$dest" | cut -f1) to $dest"
