#!/usr/bin/env bash
# Fetch the JavaScript the rendered book needs offline (MathJax, and require.js, d3 and jQuery for
# bertviz) from the npm registry into $1 (default assets/vendor). Nothing here is committed.
set -euo pipefail
dest=${1:-assets/vendor}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"
if ! command -v npm >/dev/null; then
  echo "fetch_assets: npm not found; the book will load MathJax and bertviz's scripts from CDNs" >&2
  touch "$dest/.done"; exit 0
fi
(cd "$tmp" && npm pack --silent mathjax@3.2.2 requirejs@2.3.6 d3@5.7.0 jquery@2.2.4 >/dev/null)
for t in "$tmp"/*.tgz; do mkdir -p "${t%.tgz}" && tar -xzf "$t" -C "${t%.tgz}"; done
mj="$tmp"/mathjax-3.2.2/package/es5
mkdir -p "$dest/mathjax/output/chtml/fonts"
cp "$mj/tex-mml-chtml.js" "$dest/mathjax/"
cp -r "$mj/output/chtml/fonts/woff-v2" "$dest/mathjax/output/chtml/fonts/"
cp "$tmp"/requirejs-2.3.6/package/require.js "$dest/require.js"
cp "$tmp"/d3-5.7.0/package/dist/d3.min.js "$dest/d3.min.js"
cp "$tmp"/jquery-2.2.4/package/dist/jquery.min.js "$dest/jquery.min.js"
touch "$dest/.done"
echo "fetch_assets: wrote $(du -sh "$dest" | cut -f1) to $dest"
