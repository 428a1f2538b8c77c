"""The paper's architecture pictures, drawn by code: the encoder block, Figure 3 and Figure 4.

Three diagrams for the book, each a function that returns a ``matplotlib.figure.Figure``:

* :func:`plot_encoder_block` (Chapter 4): one encoder layer as BERT uses it (post-LN), with the pre-LN
  arrangement beside it, labelled with the tensor shapes and minibert's module names.
* :func:`plot_pretraining_architectures` (Chapter 5): the paper's Figure 3, BERT, OpenAI GPT and ELMo.
* :func:`plot_finetuning_heads` (Chapter 8): the paper's Figure 4, the four fine-tuning set-ups and the
  minibert class that implements each.

They are our own drawings of the ideas, not copies of the paper's graphics. Nothing is read from disk or
the network. Every figure is 9 inches wide (the book's column), every text at least 9 points, drawn at
:data:`~minibert.viz.BOOK_DPI` dots per inch; like :func:`minibert.viz.plot_attention` the figure is not
registered with pyplot and shows itself as a PNG in IPython. Each panel is one axes whose data coordinates
are inches, so the geometry below reads as a layout on paper.
"""
from __future__ import annotations

from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from minibert.viz import BOOK_DPI, new_figure

__all__ = ["plot_encoder_block", "plot_pretraining_architectures", "plot_finetuning_heads"]

WIDTH = 9.0                  # inches: the book's column
FONT = 10                    # points: text in boxes
SMALL = 9                    # points: shapes, module names, captions (the smallest text in any diagram)
MONO = "DejaVu Sans Mono"    # module and class names, as they are spelled in the code

# One colour per kind of computation, used in all three diagrams.
C_ATTN = "#c6dbef"           # attention (blue)
C_FFN = "#fdd9b5"            # feed-forward, LSTM (orange)
C_NORM = "#d9f0d3"           # LayerNorm, Add & LayerNorm (green)
C_EMB = "#efefef"            # token embeddings, inputs (grey)
C_OUT = "#e8dff5"            # outputs a head reads (violet)
C_IDLE = "#f7f7f7"           # outputs a head ignores
C_HEAD = "#fff3b0"           # task-specific layers (yellow)
EDGE = "#404040"
LINE = "#505050"


# --------------------------------------------------------------------------------------- drawing helpers
def _panel(fig, left: float, bottom: float, width: float, height: float):
    """An axes at (left, bottom, width, height) inches whose data coordinates are inches from its corner."""
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((left / fw, bottom / fh, width / fw, height / fh))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return ax


def _box(ax, cx: float, cy: float, w: float, h: float, text: str = "", color: str = C_EMB,
         fontsize: float = FONT, family: str | None = None, weight: str = "normal", lw: float = 1.0):
    """A rounded box centred on (cx, cy) with its label centred inside; returns the patch."""
    patch = FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                           facecolor=color, edgecolor=EDGE, linewidth=lw, zorder=2)
    ax.add_patch(patch)
    if text:
        ax.text(cx, cy, text, ha="center", va="center", fontsize=fontsize, family=family, weight=weight,
                zorder=3)
    return patch


def _arrow(ax, start, end, color: str = LINE, lw: float = 1.2, style: str = "-|>", mutation: float = 9,
           connection: str = "arc3", zorder: int = 1):
    """An arrow from ``start`` to ``end`` (data coordinates); ``connection`` is a matplotlib connectionstyle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=mutation, color=color, lw=lw,
                                 shrinkA=0, shrinkB=0, connectionstyle=connection, zorder=zorder))


def _path(ax, points, color: str = LINE, lw: float = 1.2, arrow: bool = True):
    """A polyline through ``points`` with an arrow head at the last one."""
    xs, ys = zip(*points)
    ax.plot(xs[:-1], ys[:-1], color=color, lw=lw, solid_capstyle="butt", zorder=1)
    ax.plot(xs[-2:], ys[-2:], color=color, lw=lw, zorder=1)
    if arrow:
        _arrow(ax, points[-2], points[-1], color=color, lw=lw)


def _caption(fig, text: str, y: float = 0.12):
    """A centred caption ``y`` inches above the figure's bottom edge."""
    fig.text(0.5, y / fig.get_size_inches()[1], text, ha="center", va="bottom", fontsize=SMALL,
             style="italic", color="#333333")


# --------------------------------------------------------------------------------------- Chapter 4
_BOX_W, _BOX_H, _GAP = 2.5, 0.44, 0.36       # encoder boxes: width, height, vertical gap (inches)


def _stack(ax, cx: float, y0: float, items):
    """Draw ``items`` bottom to top from ``y0``, joined by arrows; return each item's (bottom, top, cy).

    An item is ``(kind, label, colour, shape)``: kind "box" or "add" (a circle with a plus); ``shape`` is
    the tensor shape written beside the arrow that leaves the item (None for none).
    """
    spans, y = [], y0
    for kind, label, color, _ in items:
        h = _BOX_H if kind == "box" else 0.34
        if kind == "box":
            _box(ax, cx, y + h / 2, _BOX_W, h, label, color)
        else:
            ax.add_patch(Circle((cx, y + h / 2), h / 2, facecolor="white", edgecolor=EDGE, lw=1.2, zorder=2))
            ax.text(cx, y + h / 2, "+", ha="center", va="center", fontsize=13, zorder=3)
        spans.append((y, y + h, y + h / 2))
        y += h + _GAP
    for (_, top, _), (bottom, _, _), (_, _, _, shape) in zip(spans, spans[1:], items):
        _arrow(ax, (cx, top), (cx, bottom))
        if shape:
            ax.text(cx + 0.08, (top + bottom) / 2, shape, ha="left", va="center", fontsize=SMALL, color="#333333")
    return spans


def plot_encoder_block():
    """One Transformer encoder layer, post-LN as in BERT (left) and pre-LN for comparison (right).

    Left: BERT's layer (Devlin et al. 2019, Section 3, "the original implementation described in Vaswani
    et al. (2017)"; Vaswani et al., Figure 1 and Section 3.1): multi-head self-attention, then
    Add & LayerNorm, then the position-wise feed-forward network H -> I = 4H -> H with GELU, then
    Add & LayerNorm, i.e. ``x <- LN(x + F(x))`` for both sub-layers. Each box names the minibert module
    that computes it (``BertSelfAttention``, ``BertSelfOutput``, ``BertIntermediate``, ``BertOutput``;
    Hugging Face's names), and the arrows carry the shapes (B, S, H) and (B, S, I) with I = 4H.
    Right: the pre-LN arrangement (Xiong et al. 2020, "On Layer Normalization in the Transformer
    Architecture", Figure 1, which draws the same comparison): ``x <- x + F(LN(x))``, the residual stream
    is never normalised, and one final LayerNorm follows the last layer. minibert implements post-LN only;
    Chapter 4 builds pre-LN from the same modules to compare gradients. Returns a Figure with two axes
    (post-LN, pre-LN).
    """
    height = 8.5
    fig = new_figure((WIDTH, height))
    bottom, top = 0.45, 7.55
    post = _panel(fig, 0.0, bottom, 5.25, top - bottom + 0.9)
    pre = _panel(fig, 5.35, bottom, 3.65, top - bottom + 0.9)

    # ---- post-LN: the boxes, their module names on the right, residual paths on the left
    cx, y0 = 2.0, 0.55
    items = [("box", "Multi-head self-attention", C_ATTN, "(B, S, H)"),
             ("box", "Dense H→H, dropout", C_ATTN, "(B, S, H)"),
             ("box", "Add & LayerNorm", C_NORM, "(B, S, H)"),
             ("box", "Dense H→I, GELU", C_FFN, "(B, S, I = 4H)"),
             ("box", "Dense I→H, dropout", C_FFN, "(B, S, H)"),
             ("box", "Add & LayerNorm", C_NORM, None)]
    spans = _stack(post, cx, y0, items)
    post.text(cx, 0.12, "x: (B, S, H)", ha="center", va="bottom", fontsize=SMALL)
    _arrow(post, (cx, 0.36), (cx, spans[0][0]))
    top_y = spans[-1][1]
    _arrow(post, (cx, top_y), (cx, top_y + 0.38))
    post.text(cx, top_y + 0.42, "to the next layer: (B, S, H)", ha="center", va="bottom", fontsize=SMALL)
    # residual x -> first Add & LayerNorm, and a -> second Add & LayerNorm (a = output of the first)
    lane = cx - _BOX_W / 2 - 0.25
    _path(post, [(cx, 0.45), (lane, 0.45), (lane, spans[2][2]), (cx - _BOX_W / 2, spans[2][2])])
    branch = (spans[2][1] + spans[3][0]) / 2
    _path(post, [(cx, branch), (lane, branch), (lane, spans[5][2]), (cx - _BOX_W / 2, spans[5][2])])
    post.text(lane - 0.06, (spans[0][2] + spans[1][2]) / 2, "residual", rotation=90, ha="right", va="center",
              fontsize=SMALL, color="#333333")
    # module names: a bracket per module, to the right of its boxes
    bx = cx + _BOX_W / 2 + 0.2
    for name, first, last in (("BertSelfAttention", 0, 0), ("BertSelfOutput", 1, 2),
                              ("BertIntermediate", 3, 3), ("BertOutput", 4, 5)):
        lo, hi = spans[first][0] + 0.04, spans[last][1] - 0.04
        post.plot([bx, bx + 0.07, bx + 0.07, bx], [lo, lo, hi, hi], color=LINE, lw=1.0)
        post.text(bx + 0.13, (lo + hi) / 2, name, ha="left", va="center", fontsize=SMALL, family=MONO)
    # the layer's frame: BertLayer, repeated L times by BertEncoder
    fx0, fx1 = lane - 0.42, bx + 1.62
    fy0, fy1 = spans[0][0] - 0.2, spans[-1][1] + 0.16
    post.add_patch(FancyBboxPatch((fx0, fy0), fx1 - fx0, fy1 - fy0, boxstyle="round,pad=0,rounding_size=0.1",
                                  facecolor="none", edgecolor="#8c8c8c", lw=1.0, ls="--", zorder=0))
    post.text(fx1 - 0.08, fy0 + 0.06, "BertLayer, × L", ha="right", va="bottom", fontsize=SMALL, family=MONO,
              color="#333333")
    post.text(fx0 + 0.05, top - bottom + 0.62, "Post-LN: BERT, minibert", ha="left", va="bottom", fontsize=11,
              weight="bold")
    post.text(fx0 + 0.05, top - bottom + 0.38, "x ← LayerNorm(x + F(x)) after each sub-layer", ha="left",
              va="bottom", fontsize=SMALL)
    where = ["minibert's modules, in model.encoder.layer[i]:",
             "  .attention.self     BertSelfAttention",
             "  .attention.output   BertSelfOutput",
             "  .intermediate       BertIntermediate",
             "  .output             BertOutput"]
    post.text(fx0 + 0.05, top - bottom + 0.05, "\n".join(where), ha="left", va="top", fontsize=SMALL,
              family=MONO, linespacing=1.35, color="#333333")

    # ---- pre-LN: LayerNorm inside each branch, the residual stream untouched, one final LayerNorm
    cx, w = 1.6, _BOX_W
    items = [("box", "LayerNorm", C_NORM, None),
             ("box", "Multi-head self-attention", C_ATTN, None),
             ("box", "Dense H→H, dropout", C_ATTN, None),
             ("add", "", None, None),
             ("box", "LayerNorm", C_NORM, None),
             ("box", "Dense H→I, GELU", C_FFN, "(B, S, I)"),
             ("box", "Dense I→H, dropout", C_FFN, None),
             ("add", "", None, None)]
    spans = _stack(pre, cx, y0 - 0.05, items)
    pre.text(cx, 0.12, "x: (B, S, H)", ha="center", va="bottom", fontsize=SMALL)
    _arrow(pre, (cx, 0.36), (cx, spans[0][0]))
    lane = cx + w / 2 + 0.25
    r = 0.17
    _path(pre, [(cx, 0.45), (lane, 0.45), (lane, spans[3][2]), (cx + r, spans[3][2])], color="#2b6cb0", lw=1.6)
    branch = (spans[3][1] + spans[4][0]) / 2
    _path(pre, [(cx, branch), (lane, branch), (lane, spans[7][2]), (cx + r, spans[7][2])], color="#2b6cb0", lw=1.6)
    pre.text(lane + 0.07, (spans[1][2] + spans[2][2]) / 2, "residual stream,\nnever normalised", rotation=90,
             ha="left", va="center", fontsize=SMALL, color="#2b6cb0")
    top_y = spans[-1][1]
    fx0, fx1 = cx - w / 2 - 0.15, lane + 0.45
    fy0, fy1 = spans[0][0] - 0.14, top_y + 0.12
    pre.add_patch(FancyBboxPatch((fx0, fy0), fx1 - fx0, fy1 - fy0, boxstyle="round,pad=0,rounding_size=0.1",
                                 facecolor="none", edgecolor="#8c8c8c", lw=1.0, ls="--", zorder=0))
    pre.text(fx0 + 0.08, fy1 - 0.06, "× L", ha="left", va="top", fontsize=SMALL, color="#333333")
    final = top_y + 0.5
    _arrow(pre, (cx, top_y), (cx, final))
    _box(pre, cx, final + _BOX_H / 2, w, _BOX_H, "Final LayerNorm (once)", C_NORM)
    pre.text(cx, top - bottom + 0.62, "Pre-LN: GPT-2 and later", ha="center", va="bottom", fontsize=11,
             weight="bold")
    pre.text(cx, top - bottom + 0.38, "x ← x + F(LayerNorm(x))", ha="center", va="bottom", fontsize=SMALL)

    _caption(fig, "after Vaswani et al. (2017), Figure 1, and Xiong et al. (2020), Figure 1; "
                  "B batch, S sequence length, H hidden size, I = 4H feed-forward size")
    return fig


# --------------------------------------------------------------------------------------- Chapter 5
_NODE_W, _NODE_H = 0.46, 0.32


def _token_row(ax, xs, y, labels, color=C_EMB, w=_NODE_W, h=_NODE_H):
    for x, label in zip(xs, labels):
        _box(ax, x, y, w, h, label, color)


def plot_pretraining_architectures():
    """The paper's Figure 3: how BERT, OpenAI GPT and ELMo connect positions during pre-training.

    Devlin et al. (2019), Figure 3 and Section 3.1 (re-drawn in the book's style): token embeddings
    E_1 .. E_N at the bottom, two layers of Transformer blocks ("Trm") or LSTMs, outputs T_1 .. T_N at the
    top, an arrow wherever information flows. BERT: every position of a layer reads every position of
    the layer below (bidirectional self-attention, trained with the masked LM). OpenAI GPT (Radford et al.
    2018): position i reads positions 1..i only (left-to-right attention). ELMo (Peters et al. 2018): a
    left-to-right and a right-to-left LSTM, trained independently, whose outputs are concatenated, which
    the paper calls a shallow concatenation. Three positions (E_1, E_2, E_N) stand for the N of the paper.
    Returns a Figure with three axes (BERT, OpenAI GPT, ELMo).
    """
    height = 4.3
    fig = new_figure((WIDTH, height))
    specs = [("BERT", "every layer attends both ways", 0.0, 2.45),
             ("OpenAI GPT", "left to right: i sees 1..i", 2.55, 2.45),
             ("ELMo", "two LSTMs, trained separately, concatenated", 5.1, 3.9)]
    axes = [_panel(fig, left, 0.42, width, height - 0.42) for _, _, left, width in specs]
    tokens = ["$E_1$", "$E_2$", "$E_N$"]
    outputs = ["$T_1$", "$T_2$", "$T_N$"]
    ys = [0.3, 1.15, 2.0, 2.85]                          # embeddings, layer 1, layer 2, outputs
    top = height - 0.42
    for ax, (title, subtitle, _, width) in zip(axes, specs):
        ax.text(width / 2, top - 0.08, title, ha="center", va="top", fontsize=11, weight="bold")
        ax.text(width / 2, top - 0.36, subtitle, ha="center", va="top", fontsize=SMALL)

    for ax, causal in ((axes[0], False), (axes[1], True)):
        xs = [0.525, 1.225, 1.925]
        _token_row(ax, xs, ys[0], tokens)
        for layer in (1, 2):
            _token_row(ax, xs, ys[layer], ["Trm"] * 3, C_ATTN)
            for i, xi in enumerate(xs):             # output i of this layer reads inputs j of the one below
                for j, xj in enumerate(xs):
                    if causal and j > i:
                        continue
                    _arrow(ax, (xj, ys[layer - 1] + _NODE_H / 2), (xi, ys[layer] - _NODE_H / 2), lw=0.9,
                           mutation=7)
        _token_row(ax, xs, ys[3], outputs, C_OUT)
        for x in xs:
            _arrow(ax, (x, ys[2] + _NODE_H / 2), (x, ys[3] - _NODE_H / 2), lw=0.9, mutation=7)

    # ELMo: the embeddings feed a left-to-right and a right-to-left LSTM; T_i = [forward_i; backward_i].
    ax = axes[2]
    fwd, bwd = [0.3, 0.9, 1.5], [2.4, 3.0, 3.6]
    fwd, bwd = [x - 0.02 for x in fwd], [x - 0.02 for x in bwd]
    emb = out = [1.25, 1.95, 2.65]
    emb = out = [x - 0.02 for x in emb]
    w = 0.46
    _token_row(ax, emb, ys[0], tokens)
    for i, (xf, xb) in enumerate(zip(fwd, bwd)):
        _arrow(ax, (emb[i], ys[0] + _NODE_H / 2), (xf, ys[1] - _NODE_H / 2), lw=0.7, color="#9a9a9a", mutation=6)
        _arrow(ax, (emb[i], ys[0] + _NODE_H / 2), (xb, ys[1] - _NODE_H / 2), lw=0.7, color="#9a9a9a", mutation=6)
    for layer in (1, 2):
        _token_row(ax, fwd, ys[layer], ["LSTM"] * 3, C_FFN, w=w)
        _token_row(ax, bwd, ys[layer], ["LSTM"] * 3, C_FFN, w=w)
        for a, b in zip(fwd, fwd[1:]):               # left to right
            _arrow(ax, (a + w / 2, ys[layer]), (b - w / 2, ys[layer]), color="#2b6cb0", lw=1.5, mutation=8)
        for a, b in zip(bwd, bwd[1:]):               # right to left
            _arrow(ax, (b - w / 2, ys[layer]), (a + w / 2, ys[layer]), color="#c05621", lw=1.5, mutation=8)
        if layer == 2:
            for xs in (fwd, bwd):
                for x in xs:
                    _arrow(ax, (x, ys[1] + _NODE_H / 2), (x, ys[2] - _NODE_H / 2), lw=0.9, mutation=7)
    _token_row(ax, out, ys[3], outputs, C_OUT)
    for i, (xf, xb) in enumerate(zip(fwd, bwd)):
        _arrow(ax, (xf, ys[2] + _NODE_H / 2), (out[i], ys[3] - _NODE_H / 2), lw=0.7, color="#9a9a9a", mutation=6)
        _arrow(ax, (xb, ys[2] + _NODE_H / 2), (out[i], ys[3] - _NODE_H / 2), lw=0.7, color="#9a9a9a", mutation=6)
    ax.text(0.05, ys[3], "left to right", ha="left", va="center", fontsize=SMALL, color="#2b6cb0")
    ax.text(3.85, ys[3], "right to left", ha="right", va="center", fontsize=SMALL, color="#c05621")

    _caption(fig, "after Devlin et al. (2019), Figure 3: Trm a Transformer block, "
                  "E the input embeddings, T the outputs")
    return fig


# --------------------------------------------------------------------------------------- Chapter 8
_TOK_W, _TOK_H, _TOK_GAP, _DOTS_W = 0.43, 0.3, 0.05, 0.2


def _sequence(ax, x0: float, y: float, labels, color=C_EMB, colors=None, w: float = _TOK_W):
    """A row of token boxes ``w`` wide from ``x0``; "…" is an unboxed narrow slot; returns the slots' x centres."""
    xs, x = [], x0
    for k, label in enumerate(labels):
        width = _DOTS_W if label == "…" else w
        cx = x + width / 2
        if label == "…":
            ax.text(cx, y, "…", ha="center", va="center", fontsize=FONT)
        else:
            fontsize = SMALL if label.startswith("[") else FONT
            _box(ax, cx, y, w, _TOK_H, label, (colors[k] if colors else color), fontsize=fontsize)
        xs.append(cx)
        x += width + _TOK_GAP
    return xs


def _row_width(labels, w: float = _TOK_W) -> float:
    return sum(_DOTS_W if t == "…" else w for t in labels) + _TOK_GAP * (len(labels) - 1)


def _output_label(token: str, second: bool) -> str:
    """The paper's name of the final hidden vector above input ``token``: C for [CLS], T_i (T'_i in the
    second segment) otherwise, with the index of ``token`` ("$A_1$" -> "$T_1$")."""
    if token in ("…", "[CLS]"):
        return "…" if token == "…" else "$C$"
    t = "T'" if second else "T"
    index = "\\mathrm{sep}" if token == "[SEP]" else token.strip("$").split("_", 1)[1]
    return f"${t}_{{{index}}}$"


def plot_finetuning_heads():
    """The paper's Figure 4: four ways of putting a task on the same pre-trained BERT.

    Devlin et al. (2019), Figure 4 and Section 4 (re-drawn in the book's style). Each panel shows the input
    sequence, the encoder, its final hidden vectors (C for [CLS], T_i for the others, as in the paper),
    which of them the task layer reads (coloured; the others grey), and the minibert class:
    (a) sentence-pair classification (MNLI, QQP, QNLI, STS-B, MRPC, RTE; Section 4.1) and (b) single-sentence
    classification (SST-2, CoLA): ``BertForSequenceClassification``, a linear layer on C (minibert and
    Hugging Face take C after the tanh pooler); (c) question answering (SQuAD v1.1, Section 4.2):
    ``BertForQuestionAnswering``, ``qa_outputs`` scores every paragraph token as the answer's start and end;
    (d) single-sentence tagging (CoNLL-2003 NER, Section 5.3): ``BertForTokenClassification``, a label per
    token from T_i (the first sub-token of each word). The paper also puts SWAG under (a); minibert answers
    it with ``BertForMultipleChoice`` (one score per choice from C). Returns a Figure with four axes.
    """
    height = 8.1
    fig = new_figure((WIDTH, height))
    pw, ph = 4.4, 3.7
    lefts, bottoms = (0.0, 4.6), (0.45 + ph + 0.15, 0.45)
    panels = [
        ("(a) Sentence-pair classification", "MNLI, QQP, QNLI, STS-B, MRPC, RTE",
         ["[CLS]", "$A_1$", "…", "$A_n$", "[SEP]", "$B_1$", "…", "$B_m$", "[SEP]"],
         "BertForSequenceClassification", "cls"),
        ("(b) Single-sentence classification", "SST-2, CoLA",
         ["[CLS]", "$w_1$", "$w_2$", "…", "$w_N$", "[SEP]"], "BertForSequenceClassification", "cls"),
        ("(c) Question answering", "SQuAD v1.1",
         ["[CLS]", "$q_1$", "…", "$q_n$", "[SEP]", "$p_1$", "$p_2$", "…", "$p_m$", "[SEP]"],
         "BertForQuestionAnswering", "span"),
        ("(d) Single-sentence tagging", "CoNLL-2003 NER",
         ["[CLS]", "$w_1$", "$w_2$", "…", "$w_N$", "[SEP]"], "BertForTokenClassification", "tag"),
    ]
    y_in, y_bert, y_out, y_head, y_result = 0.72, 1.3, 1.88, 2.5, 3.0
    for k, (title, tasks, tokens, cls, kind) in enumerate(panels):
        ax = _panel(fig, lefts[k % 2], bottoms[k // 2], pw, ph)
        ax.text(0.1, ph - 0.05, title, ha="left", va="top", fontsize=FONT + 0.5, weight="bold")
        ax.text(0.1, ph - 0.3, tasks, ha="left", va="top", fontsize=SMALL)
        ax.text(pw / 2, 0.05, cls, ha="center", va="bottom", fontsize=SMALL, family=MONO)
        w = _TOK_W if len(tokens) > 6 else 0.58
        x0 = (pw - _row_width(tokens, w)) / 2
        xs = _sequence(ax, x0, y_in, tokens, w=w)
        sep = tokens.index("[SEP]")
        if kind in ("cls", "tag") and tokens.count("[SEP]") == 1:
            groups = [("sentence", 1, sep - 1)]
        else:
            names = ("question", "paragraph") if kind == "span" else ("sentence A", "sentence B")
            groups = [(names[0], 1, sep - 1), (names[1], sep + 1, len(tokens) - 2)]
        for name, first, last in groups:             # brackets under the segments
            lo, hi = xs[first] - w / 2, xs[last] + w / 2
            yb = y_in - _TOK_H / 2 - 0.07
            ax.plot([lo, lo, hi, hi], [yb + 0.04, yb, yb, yb + 0.04], color=LINE, lw=0.9)
            ax.text((lo + hi) / 2, yb - 0.03, name, ha="center", va="top", fontsize=SMALL)
        lo, hi = x0, xs[-1] + w / 2
        _box(ax, (lo + hi) / 2, y_bert, hi - lo, 0.32, "BERT (pre-trained encoder)", C_ATTN, fontsize=FONT)
        # which outputs the task layer reads
        if kind == "cls":
            read = {0}
        elif kind == "span":
            read = {i for i in range(sep + 1, len(tokens) - 1) if tokens[i] != "…"}
        else:
            read = {i for i in range(1, len(tokens) - 1) if tokens[i] != "…"}
        colors = [C_OUT if i in read else C_IDLE for i in range(len(tokens))]
        _sequence(ax, x0, y_out, [_output_label(t, i > sep) for i, t in enumerate(tokens)], colors=colors, w=w)
        for x, t in zip(xs, tokens):
            if t != "…":
                _arrow(ax, (x, y_in + _TOK_H / 2), (x, y_bert - 0.16), lw=0.8, mutation=6)
                _arrow(ax, (x, y_bert + 0.16), (x, y_out - _TOK_H / 2), lw=0.8, mutation=6)
        if kind == "cls":
            hx = xs[0] - w / 2 + 1.1
            _box(ax, hx, y_head, 2.2, 0.36, "pooler, classifier: H → K", C_HEAD, fontsize=SMALL)
            _arrow(ax, (xs[0], y_out + _TOK_H / 2), (xs[0], y_head - 0.18), lw=1.2)
            _arrow(ax, (hx, y_head + 0.18), (hx, y_result - 0.12), lw=1.2)
            label = "class label (entailment, ...)" if k == 0 else "class label (positive, ...)"
            ax.text(hx, y_result - 0.08, label, ha="center", va="bottom", fontsize=SMALL)
        elif kind == "span":
            first, last = min(read), max(read)
            lo, hi = xs[first] - w / 2, xs[last] + w / 2
            hx = (lo + hi) / 2
            _box(ax, hx, y_head, hi - lo, 0.36, "qa_outputs: H → 2", C_HEAD, fontsize=SMALL)
            for i in read:
                _arrow(ax, (xs[i], y_out + _TOK_H / 2), (xs[i], y_head - 0.18), lw=1.0, mutation=7)
            _arrow(ax, (hx, y_head + 0.18), (hx, y_result - 0.12), lw=1.2)
            ax.text(hx, y_result - 0.08, "start / end of the answer span", ha="center", va="bottom",
                    fontsize=SMALL)
        else:
            lo, hi = xs[1] - w / 2, xs[len(tokens) - 2] + w / 2
            _box(ax, (lo + hi) / 2, y_head, hi - lo, 0.3, "classifier: H → K", C_HEAD,
                 fontsize=SMALL)
            for i in read:
                _arrow(ax, (xs[i], y_out + _TOK_H / 2), (xs[i], y_head - 0.15), lw=1.0, mutation=7)
            tags = {1: "B-PER", 2: "O", len(tokens) - 2: "B-LOC"}
            for i, tag in tags.items():
                _arrow(ax, (xs[i], y_head + 0.15), (xs[i], y_result - 0.14), lw=1.0, mutation=7)
                _box(ax, xs[i], y_result, w, 0.28, tag, "white", fontsize=SMALL)
            ax.text(xs[3], y_result, "…", ha="center", va="center", fontsize=FONT)
    _caption(fig, "after Devlin et al. (2019), Figure 4: C and T are the final hidden vectors; "
                  "coloured ones are read by the task's layer", y=0.08)
    return fig
