"""Pictures of attention: interactive bertviz views and static heatmaps.

Two kinds of picture, for two kinds of reader:

* :func:`head_view` and :func:`model_view` run a minibert model (or any model with the same forward
  signature) on a text or a sentence pair with ``output_attentions=True`` and hand the attention
  probabilities and the WordPiece tokens to Jesse Vig's bertviz (Vig 2019, "A Multiscale Visualization
  of Attention in the Transformer Model"). They return an ``IPython.display.HTML`` object, so in a
  notebook the view appears when the call is the last line of a cell.
* :func:`plot_attention` draws a grid of matplotlib heatmaps, one per head, for places where JavaScript
  does not run (a PDF, a static page, a terminal that saves PNGs).

What minibert changes in bertviz's HTML, and why:

1. bertviz's HTML starts with a ``<script>`` tag that loads require.js from a CDN and its JavaScript tells
   require.js to fetch d3 and jQuery from the CDN too. The book loads all three itself on the pages that
   show bertviz (``page_js_files`` in ``_config.yml``, ``assets/offline.js``), so the rendered book must
   not touch the network. We drop the unconditional CDN tag and wrap bertviz's script so that it loads
   require.js from the CDN *only* when the page has no require.js of its own (JupyterLab, VS Code); where
   one exists (the book's Chapter 3, the classic notebook) it is used,
   and modules the page has already defined (the book's ``d3`` and ``jquery``) are never fetched.
2. Attention probabilities are rounded (``decimals``, 3 by default) before they are serialised: the HTML
   is several times smaller, and the stored notebook output does not depend on the last bits of float32
   arithmetic, which differ between CPUs.
3. bertviz 1.4 substitutes its parameters for every occurrence of its template marker, including one in a
   JavaScript comment, so each view carries all its attention numbers twice. We drop the copy in the comment.

bertviz gives every view a random element id (``bertviz-<32 hex digits>``); the book's
``nbval_sanitize.cfg`` masks it when stored outputs are compared.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Sequence

import matplotlib
import torch
from matplotlib.figure import Figure

__all__ = ["AttentionInput", "BOOK_DPI", "BookFigure", "book_style", "get_attention", "head_view", "model_view", "new_figure",
           "plot_attention"]

BOOK_DPI = 150        # dots per inch of the book's figures: a 9-inch figure is 1350 px, sharp in the column

# The tag bertviz 1.4 puts in front of every view; we replace it with a conditional loader.
_REQUIRE_CDN = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js"
_REQUIRE_TAG = f'<script src="{_REQUIRE_CDN}"></script>'
_SCRIPT_OPEN = '<script type="text/javascript">'


@dataclass
class AttentionInput:
    """What the views need: per-layer attention, the tokens, and where sentence B starts.

    ``attentions`` is a tuple with one tensor per layer, each (1, A, S, S): row i of head h is the
    distribution with which query position i attends over the S key positions.
    """
    attentions: tuple[torch.Tensor, ...]   # L x (1, A, S, S)
    tokens: list[str]                       # S WordPiece tokens, [CLS] ... [SEP] (... [SEP])
    sentence_b_start: int | None            # index of the first token of segment B, or None


def _check_text(name: str, value, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty; give the view some text to attend over")


@torch.no_grad()
def get_attention(model: torch.nn.Module, tokenizer, text: str, text_pair: str | None = None) -> AttentionInput:
    """Run ``model`` on one text (or a pair) and collect its attention probabilities and tokens.

    The model runs in eval mode (no dropout) and is put back in the mode it was in. ``tokenizer`` is a
    minibert ``BertTokenizer`` (or anything with the same ``__call__`` and ``convert_ids_to_tokens``).
    """
    _check_text("text", text)
    _check_text("text_pair", text_pair, optional=True)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. minibert.model.BertModel), got {type(model).__name__}")
    enc = tokenizer(text, text_pair, return_tensors="pt")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = model(input_ids=enc["input_ids"].to(device),
                    token_type_ids=enc["token_type_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                    output_attentions=True)
    finally:
        model.train(was_training)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        raise ValueError(f"{type(model).__name__} returned no attentions with output_attentions=True; "
                         "the views need the attention probabilities of every layer")
    attentions = tuple(a.detach().float().cpu() for a in attentions)     # L x (1, A, S, S)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    segment = enc["token_type_ids"][0]                                    # (S,)
    sentence_b_start = int(segment.argmax()) if text_pair is not None and bool(segment.any()) else None
    return AttentionInput(attentions, tokens, sentence_b_start)


def _check_layer(layer, num_layers: int) -> None:
    if layer is None:
        return
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int or None, got {type(layer).__name__}")
    if not 0 <= layer < num_layers:
        raise ValueError(f"layer={layer} is out of range: the model has {num_layers} layers (0..{num_layers - 1})")


def _check_indices(name: str, values, upper: int, what: str) -> list[int] | None:
    if values is None:
        return None
    if isinstance(values, (int, str)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of ints or None, got {type(values).__name__}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty; pass None to show all {what}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must contain ints, got {v!r}")
        if not 0 <= v < upper:
            raise ValueError(f"{name} contains {v}, out of range: there are {upper} {what} (0..{upper - 1})")
    return values


def _offline_friendly(html: str) -> str:
    """Rewrite bertviz's HTML so it loads nothing from a CDN when the page already has require.js."""
    if _SCRIPT_OPEN not in html:          # another bertviz layout: leave it alone rather than break it
        return html
    html = html.replace(_REQUIRE_TAG, "")
    # "const params = {...}; // HACK: {...} is a template marker ..." -> "const params = {...};"
    html = re.sub(r"^(\s*const params = .*?\}); // HACK: .*$", r"\1;", html, count=1, flags=re.M)
    head, _, rest = html.partition(_SCRIPT_OPEN)
    script, _, tail = rest.rpartition("</script>")
    script = script.replace("</", "<\\/")  # keep token text from closing the script element early
    loader = (
        "(function () {\n"
        "  function minibertRun() {\n" + script + "\n  }\n"
        "  if (typeof window.requirejs === 'function') { minibertRun(); return; }\n"
        "  var s = document.createElement('script');\n"
        f"  s.src = '{_REQUIRE_CDN}';\n"
        "  s.onload = minibertRun;\n"
        "  document.head.appendChild(s);\n"
        "})();\n"
    )
    return head + _SCRIPT_OPEN + "\n" + loader + "</script>" + tail


def _rounded(attentions, decimals: int) -> list[torch.Tensor]:
    # float64 so that tolist() prints 0.123, not 0.12300000339746475.
    return [a.double().round(decimals=decimals) for a in attentions]


def _bertviz():
    try:
        import bertviz
    except ImportError as exc:  # pragma: no cover - bertviz is in requirements.txt
        raise ImportError("minibert.viz needs bertviz: pip install bertviz (or pip install minibert[viz])") from exc
    return bertviz


def head_view(model: torch.nn.Module, tokenizer, text: str, text_pair: str | None = None,
              layer: int | None = None, heads: Sequence[int] | None = None,
              layers: Sequence[int] | None = None, decimals: int = 3):
    """bertviz's head view of ``model`` on ``text`` (and ``text_pair``): one layer, chosen heads.

    Lines join each token (left) to the tokens it attends to (right), one colour per head, darker for
    more weight. For a pair, a drop-down selects A->A, B->B, A->B or B->A attention. ``layer`` is the
    layer shown first, ``heads`` the heads selected at first (default all), ``layers`` the layers put in
    the page at all (default all; fewer make a smaller page). Returns an ``IPython.display.HTML``.
    """
    data = get_attention(model, tokenizer, text, text_pair)
    num_layers, num_heads = len(data.attentions), data.attentions[0].shape[1]
    _check_layer(layer, num_layers)
    heads = _check_indices("heads", heads, num_heads, "heads")
    layers = _check_indices("layers", layers, num_layers, "layers")
    if layers is not None and layer is not None and layer not in layers:
        raise ValueError(f"layer={layer} is not among layers={layers}")
    html = _bertviz().head_view(_rounded(data.attentions, decimals), data.tokens,
                                sentence_b_start=data.sentence_b_start, layer=layer, heads=heads,
                                include_layers=layers, html_action="return")
    html.data = _offline_friendly(html.data)
    return html


def model_view(model: torch.nn.Module, tokenizer, text: str, text_pair: str | None = None,
               layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
               display_mode: str = "light", decimals: int = 3):
    """bertviz's model view: a thumbnail of every (layer, head) attention pattern; click one to enlarge.

    ``layers`` and ``heads`` restrict the grid (fewer thumbnails render faster). Returns an
    ``IPython.display.HTML``.
    """
    if display_mode not in ("light", "dark"):
        raise ValueError(f"display_mode must be 'light' or 'dark', got {display_mode!r}")
    data = get_attention(model, tokenizer, text, text_pair)
    num_layers, num_heads = len(data.attentions), data.attentions[0].shape[1]
    layers = _check_indices("layers", layers, num_layers, "layers")
    heads = _check_indices("heads", heads, num_heads, "heads")
    html = _bertviz().model_view(_rounded(data.attentions, decimals), data.tokens,
                                 sentence_b_start=data.sentence_b_start, display_mode=display_mode,
                                 include_layers=layers, include_heads=heads, html_action="return")
    html.data = _offline_friendly(html.data)
    return html


def book_style(dpi: int = BOOK_DPI) -> None:
    """Make every matplotlib figure drawn from now on sharp in the book: ``figure.dpi`` and ``savefig.dpi``.

    A chapter calls it once, after ``import matplotlib.pyplot as plt`` (IPython's inline backend sends
    PNGs at the figure's dpi, so the setting must be in place before figures are created). At the
    default 100 dpi a 9-inch figure is 900 pixels, and the browser scales a wider figure down into the
    column, so 7-point text ends up about 6 pixels high; at 150 dpi the same text has half again as many
    pixels. Only the resolution changes: sizes in inches and points, and so the layout, stay as they are.
    """
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 50 <= dpi <= 600:
        raise ValueError(f"dpi must be a number between 50 and 600, got {dpi!r}")
    matplotlib.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi})


class BookFigure(Figure):
    """A Figure that shows itself as a PNG in IPython without going through pyplot."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


def new_figure(figsize: tuple[float, float], dpi: float | None = None, **kwargs):
    """A ``matplotlib.figure.Figure`` outside pyplot that IPython shows as a PNG.

    Not registered with pyplot: no global state, nothing to close; in a notebook it shows when it is the
    last expression of a cell or passed to ``display``. ``dpi`` defaults to the larger of
    :data:`BOOK_DPI` and ``rcParams["figure.dpi"]``.
    """
    if dpi is None:
        dpi = max(BOOK_DPI, matplotlib.rcParams["figure.dpi"])
    return BookFigure(figsize=figsize, dpi=dpi, **kwargs)


def plot_attention(attn, tokens: Sequence[str], heads: Sequence[int] | None = None, ncols: int | None = None,
                   title: str | None = None, cmap: str = "viridis", max_width: float = 9.0):
    """A grid of heatmaps, one per head: row i, column j is how much query token i attends to key token j.

    ``attn`` is one layer's attention, (A, S, S), (1, A, S, S) or a single head's (S, S); a tensor or array.
    ``heads`` picks heads to draw (default all), ``ncols`` panels per row, ``max_width`` the figure's
    width limit in inches (9, the book's column, by default). Returns a ``matplotlib.figure.Figure`` with
    exactly one axes per drawn head (no colour bar: every cell is a probability in [0, 1] and all panels
    share that scale). The panels share their axes: the tokens label the rows of the left column and the
    columns of the lowest panel in each column, in a font as large as the cells allow (at most 9 points).
    Without ``ncols`` the grid has as many columns (at most 4) as keep the labels at 9 points. The figure
    is drawn at :data:`BOOK_DPI` and is not registered with pyplot (no global state, nothing to close): in
    a notebook it shows as a PNG when it is the last expression of a cell or passed to ``display``; save
    it with ``fig.savefig``.
    """
    if isinstance(attn, (list, tuple)):
        raise TypeError("attn must be one layer's attention tensor (A, S, S); "
                        "for a model's output pick a layer, e.g. out.attentions[layer][0]")
    attn = torch.as_tensor(attn).detach().float().cpu()
    if attn.dim() == 4:
        if attn.shape[0] != 1:
            raise ValueError(f"attn has batch size {attn.shape[0]}; pass one example, attn[i] of shape (A, S, S)")
        attn = attn[0]
    elif attn.dim() == 2:
        attn = attn[None]
    if attn.dim() != 3:
        raise ValueError(f"attn must have shape (A, S, S), (1, A, S, S) or (S, S), got {tuple(attn.shape)}")
    num_heads, s_q, s_k = attn.shape
    if s_q != s_k:
        raise ValueError(f"attn must be square over the sequence (self-attention), got {s_q} x {s_k}")
    tokens = list(tokens)
    if len(tokens) != s_q:
        raise ValueError(f"attn covers {s_q} positions but {len(tokens)} tokens were given")
    heads = _check_indices("heads", heads, num_heads, "heads") or list(range(num_heads))
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1):
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if isinstance(max_width, bool) or not isinstance(max_width, (int, float)) or max_width < 3:
        raise ValueError(f"max_width must be at least 3 (inches), got {max_width!r}")

    longest = max((len(t) for t in tokens), default=1)

    def layout(n: int) -> tuple[float, float, float]:
        # Panel side (inches), label font (points) and label margin (inches) for n columns.
        side = min(0.17 * s_q + 0.5, 4.0)
        font = 9.0
        for _ in range(3):                      # the margin depends on the font, the font on the side
            margin = 0.62 * font / 72 * longest + 0.12
            side = min(side, (max_width - margin - 0.12 * (n - 1)) / n)
            font = max(5.0, min(9.0, math.floor(side * 72 / max(s_q, 1) * 0.85 * 2) / 2))
        return side, font, margin

    if ncols is None:
        fits = [n for n in range(1, min(4, len(heads)) + 1) if layout(n)[1] >= 9.0]
        ncols = max(fits) if fits else 1
    ncols = min(ncols, len(heads))
    nrows = math.ceil(len(heads) / ncols)
    side, fontsize, margin = layout(ncols)
    size = (margin + ncols * side + 0.12 * (ncols - 1) + 0.1,
            margin + nrows * (side + 0.3) + (0.35 if title else 0.0))
    fig = new_figure(size, layout="constrained")
    for k, h in enumerate(heads):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.imshow(attn[h].numpy(), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=9)
        bottom = k + ncols >= len(heads)          # no panel below this one
        ax.set_xticks(range(s_q), tokens if bottom else [], rotation=90, fontsize=fontsize)
        ax.set_yticks(range(s_q), tokens if k % ncols == 0 else [], fontsize=fontsize)
        ax.tick_params(length=0)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
