"""minibert.viz: bertviz views of a minibert model and static attention heatmaps."""
import json
import re

import pytest
import torch
from IPython.display import HTML

from minibert import vocab_path
from minibert.config import BertConfig
from minibert.model import BertModel
from minibert.tokenizer import BertTokenizer
from minibert.viz import BOOK_DPI, book_style, get_attention, head_view, model_view, plot_attention

TEXT, PAIR = "The cat sat on the mat.", "It was tired."


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer.from_pretrained(vocab_path())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = BertConfig.from_preset("tiny", vocab_size=30522, num_hidden_layers=3, num_attention_heads=4)
    return BertModel(config).eval()


def _params(html: str) -> dict:
    """The JSON bertviz embeds in its script (``const params = {...};``)."""
    match = re.search(r"const params = (\{.*\});\n", html)
    assert match, "no params in the bertviz HTML"
    return json.loads(match.group(1))


# --------------------------------------------------------------------------------------- get_attention
def test_get_attention_tokens_segments_and_mode(model, tokenizer):
    model.train()
    data = get_attention(model, tokenizer, TEXT, PAIR)
    assert model.training, "get_attention must restore the model's training mode"
    model.eval()
    assert data.tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]",
                           "it", "was", "tired", ".", "[SEP]"]
    assert data.sentence_b_start == 9
    assert len(data.attentions) == 3
    assert data.attentions[0].shape == (1, 4, 14, 14)
    torch.testing.assert_close(data.attentions[1].sum(-1), torch.ones(1, 4, 14))
    assert get_attention(model, tokenizer, TEXT).sentence_b_start is None


# --------------------------------------------------------------------------------------- bertviz views
def test_head_view_html_has_tokens_and_model_attention(model, tokenizer):
    html = head_view(model, tokenizer, TEXT, layer=1, heads=[0, 2])
    assert isinstance(html, HTML)
    assert re.search(r'<div id="bertviz-[0-9a-f]+"', html.data)
    params = _params(html.data)
    assert params["layer"] == 1 and params["heads"] == [0, 2]
    (view,) = params["attention"]                     # a single text: one view, no A/B filter
    assert view["left_text"] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    # The numbers bertviz draws are the model's attention probabilities, rounded to 3 decimals.
    expected = torch.stack(get_attention(model, tokenizer, TEXT).attentions)[:, 0]   # (L, A, S, S)
    torch.testing.assert_close(torch.tensor(view["attn"], dtype=torch.float64), expected.double(), atol=5e-4, rtol=0)


def test_head_view_layers_subset(model, tokenizer):
    params = _params(head_view(model, tokenizer, TEXT, layer=2, layers=[0, 2]).data)
    assert params["include_layers"] == [0, 2] and params["layer"] == 2
    assert len(params["attention"][0]["attn"]) == 2                  # only two layers in the page
    with pytest.raises(ValueError, match=r"layer=1 is not among layers=\[0, 2\]"):
        head_view(model, tokenizer, TEXT, layer=1, layers=[0, 2])


def test_head_view_pair_has_sentence_filters(model, tokenizer):
    html = head_view(model, tokenizer, TEXT, PAIR).data
    names = [v["name"] for v in _params(html)["attention"]]
    assert names == ["All", "Sentence A -> Sentence A", "Sentence B -> Sentence B",
                     "Sentence A -> Sentence B", "Sentence B -> Sentence A"]
    assert "tired" in html


def test_views_do_not_need_a_cdn_when_the_page_has_requirejs(model, tokenizer):
    for html in (head_view(model, tokenizer, TEXT).data, model_view(model, tokenizer, TEXT).data):
        # bertviz's unconditional CDN tag is gone; require.js comes from the CDN only as a fallback.
        assert '<script src="https://cdnjs' not in html
        assert "typeof window.requirejs === 'function'" in html
        assert html.count("<script") == 1 and html.count("</script>") == 1
        assert html.count('"attention": [') == 1        # the numbers once, not again in a comment


def test_model_view_layers_and_heads(model, tokenizer):
    html = model_view(model, tokenizer, TEXT, PAIR, layers=[0, 2], heads=[1, 3])
    assert isinstance(html, HTML)
    params = _params(html.data)
    assert params["include_layers"] == [0, 2] and params["include_heads"] == [1, 3]
    attn = params["attention"][0]["attn"]             # (layers, heads, S, S)
    assert (len(attn), len(attn[0]), len(attn[0][0])) == (2, 2, 14)
    assert "[SEP]" in params["attention"][0]["left_text"]


def test_views_reject_bad_input(model, tokenizer):
    with pytest.raises(ValueError, match="text is empty"):
        head_view(model, tokenizer, "   ")
    with pytest.raises(TypeError, match="text_pair must be a str"):
        head_view(model, tokenizer, TEXT, ["not", "a", "str"])
    with pytest.raises(ValueError, match=r"layer=3 is out of range: the model has 3 layers"):
        head_view(model, tokenizer, TEXT, layer=3)
    with pytest.raises(ValueError, match=r"heads contains 4, out of range: there are 4 heads"):
        model_view(model, tokenizer, TEXT, heads=[0, 4])
    with pytest.raises(TypeError, match="layers must be a list of ints"):
        model_view(model, tokenizer, TEXT, layers=1)
    with pytest.raises(ValueError, match="display_mode"):
        model_view(model, tokenizer, TEXT, display_mode="blue")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        head_view("bert", tokenizer, TEXT)

    class NoAttention(torch.nn.Module):
        def forward(self, **kwargs):
            return model(**{**kwargs, "output_attentions": False})

    wrapped = NoAttention()
    wrapped.inner = model
    with pytest.raises(ValueError, match="returned no attentions"):
        head_view(wrapped, tokenizer, TEXT)


# --------------------------------------------------------------------------------------- heatmaps
def test_plot_attention_one_axes_per_head():
    torch.manual_seed(0)
    tokens = ["[CLS]", "a", "b", "c", "[SEP]"]
    attn = torch.softmax(torch.randn(6, 5, 5), dim=-1)                  # (A, S, S)
    fig = plot_attention(attn, tokens, ncols=4, title="layer 0")
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes] == [f"head {h}" for h in range(6)]
    # Shared axes: tokens label the rows of the left column and the columns of the lowest panel of each column.
    labels = [([t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()])
              for ax in fig.axes]
    for k, (x, y) in enumerate(labels):
        assert x == (tokens if k + 4 >= 6 else [""] * 5), k       # panels 2..5 have nothing below them
        assert y == (tokens if k % 4 == 0 else [""] * 5), k
    # The image is the head's matrix, on a fixed [0, 1] colour scale.
    image = fig.axes[3].get_images()[0]
    assert image.get_clim() == (0.0, 1.0)
    torch.testing.assert_close(torch.as_tensor(image.get_array()), attn[3])
    assert fig._repr_png_().startswith(b"\x89PNG")                         # IPython shows it as a PNG
    assert len(plot_attention(attn[None], tokens, heads=[1, 5]).axes) == 2   # (1, A, S, S), two heads
    assert len(plot_attention(attn[0].numpy(), tokens).axes) == 1            # one head (S, S), numpy


def test_plot_attention_rejects_bad_input():
    attn = torch.full((2, 4, 4), 0.25)
    with pytest.raises(ValueError, match="attn covers 4 positions but 3 tokens were given"):
        plot_attention(attn, ["a", "b", "c"])
    with pytest.raises(ValueError, match="square"):
        plot_attention(torch.zeros(2, 4, 3), list("abcd"))
    with pytest.raises(ValueError, match="batch size 2"):
        plot_attention(torch.zeros(2, 2, 4, 4), list("abcd"))
    with pytest.raises(ValueError, match=r"shape \(A, S, S\)"):
        plot_attention(torch.zeros(4), list("abcd"))
    with pytest.raises(TypeError, match="pick a layer"):
        plot_attention((attn, attn), list("abcd"))
    with pytest.raises(ValueError, match="heads contains 2"):
        plot_attention(attn, list("abcd"), heads=[2])
    with pytest.raises(ValueError, match="ncols"):
        plot_attention(attn, list("abcd"), ncols=0)


def test_plot_attention_twelve_heads_fit_the_column_at_9_points():
    # Chapter 3's grid: 12 heads over an 18-token pair. At the column's 9 inches the labels stay at 9 points.
    tokens = "[CLS] the cat sat on the mat because it was tired . [SEP] then it fell asleep [SEP]".split()
    attn = torch.softmax(torch.randn(12, 18, 18), dim=-1)
    fig = plot_attention(attn, tokens, title="layer 0")
    assert fig.get_size_inches()[0] <= 9.2 and fig.dpi == BOOK_DPI
    assert len(fig.axes) == 12 and fig.axes[0].get_subplotspec().get_gridspec().ncols == 3
    assert {t.get_fontsize() for ax in fig.axes for t in ax.get_yticklabels()} == {9.0}
    _assert_texts_inside(fig)
    crowded = plot_attention(attn, tokens, ncols=4)            # an explicit ncols wins; the font shrinks to fit
    assert crowded.axes[0].get_subplotspec().get_gridspec().ncols == 4
    assert 6.0 <= crowded.axes[0].get_yticklabels()[0].get_fontsize() < 9.0
    with pytest.raises(ValueError, match="max_width must be at least 3"):
        plot_attention(attn, tokens, max_width=1)


def test_book_style_sets_the_resolution():
    import matplotlib

    with matplotlib.rc_context():
        book_style()
        assert matplotlib.rcParams["figure.dpi"] == 150 and matplotlib.rcParams["savefig.dpi"] == 150
        book_style(200)
        assert matplotlib.rcParams["figure.dpi"] == 200
        with pytest.raises(ValueError, match="dpi must be a number between 50 and 600, got 5"):
            book_style(5)


# --------------------------------------------------------------------------------------- diagrams
def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _assert_texts_inside(fig):
    """Every text lies inside the figure, and inside the box it labels when its centre is in a box."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.patches import FancyBboxPatch

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    page = fig.bbox
    boxes = [p.get_window_extent(renderer) for ax in fig.axes for p in ax.patches
             if isinstance(p, FancyBboxPatch) and p.get_facecolor()[3] > 0]
    for text in _texts(fig):
        ext = text.get_window_extent(renderer)
        assert page.x0 - 0.5 <= ext.x0 and ext.x1 <= page.x1 + 0.5, f"{text.get_text()!r} leaves the figure"
        assert page.y0 - 0.5 <= ext.y0 and ext.y1 <= page.y1 + 0.5, f"{text.get_text()!r} leaves the figure"
        cx, cy = (ext.x0 + ext.x1) / 2, (ext.y0 + ext.y1) / 2
        for box in boxes:
            if box.contains(cx, cy):
                assert (box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1), \
                    f"{text.get_text()!r} overflows its box"
    return renderer


def _assert_clean(fig, min_points: float = 9.0):
    """No text outside the figure or its box, no two texts overlapping, none smaller than ``min_points``."""
    renderer = _assert_texts_inside(fig)
    texts = _texts(fig)
    extents = [t.get_window_extent(renderer) for t in texts]
    for i in range(len(texts)):
        assert texts[i].get_fontsize() >= min_points, texts[i].get_text()
        for j in range(i + 1, len(texts)):
            a, b = extents[i], extents[j]
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= 0.5 or overlap_y <= 0.5, \
                f"{texts[i].get_text()!r} overlaps {texts[j].get_text()!r}"


def _png(fig, tmp_path, name):
    from PIL import Image

    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    with Image.open(path) as image:
        assert image.size == (round(fig.get_size_inches()[0] * fig.dpi), round(fig.get_size_inches()[1] * fig.dpi))
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_plot_encoder_block(tmp_path):
    from minibert.diagrams import plot_encoder_block

    fig = plot_encoder_block()
    assert len(fig.axes) == 2 and fig.get_size_inches()[0] == 9.0 and fig.dpi == BOOK_DPI
    post, pre = ([t.get_text() for t in ax.texts] for ax in fig.axes)
    assert post.count("Add & LayerNorm") == 2 and "LayerNorm" not in post     # post-LN: LN after each add
    assert pre.count("LayerNorm") == 2 and "Add & LayerNorm" not in pre       # pre-LN: LN inside each branch
    assert pre.count("+") == 2 and "Final LayerNorm (once)" in pre
    for name in ("BertSelfAttention", "BertSelfOutput", "BertIntermediate", "BertOutput"):
        assert post.count(name) == 1, name                                      # the bracket labels
    assert "(B, S, I = 4H)" in post and "(B, S, H)" in post and "(B, S, I)" in pre
    _assert_clean(fig)
    _png(fig, tmp_path, "encoder")


def test_plot_pretraining_architectures(tmp_path):
    from minibert.diagrams import plot_pretraining_architectures

    fig = plot_pretraining_architectures()
    assert len(fig.axes) == 3 and fig.get_size_inches()[0] == 9.0
    bert, gpt, elmo = ([t.get_text() for t in ax.texts] for ax in fig.axes)
    assert (bert[0], gpt[0], elmo[0]) == ("BERT", "OpenAI GPT", "ELMo")
    assert bert.count("Trm") == gpt.count("Trm") == 6 and elmo.count("LSTM") == 12
    for texts in (bert, gpt, elmo):
        assert [t for t in texts if t.startswith("$E")] == ["$E_1$", "$E_2$", "$E_N$"]
    # Connectivity: 3 x 3 arrows per BERT layer, 1 + 2 + 3 for GPT's left-to-right layers.
    arrows = [len(ax.patches) - sum(t in ("Trm", "LSTM") or t.startswith("$") for t in texts)
              for ax, texts in zip(fig.axes, (bert, gpt, elmo))]
    assert arrows[:2] == [2 * 9 + 3, 2 * 6 + 3]
    assert any("after Devlin et al. (2019), Figure 3" in t.get_text() for t in fig.texts)
    _assert_clean(fig)
    _png(fig, tmp_path, "figure3")


def test_plot_finetuning_heads(tmp_path):
    from minibert.diagrams import plot_finetuning_heads

    fig = plot_finetuning_heads()
    assert len(fig.axes) == 4 and fig.get_size_inches()[0] == 9.0
    panels = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    classes = ["BertForSequenceClassification", "BertForSequenceClassification", "BertForQuestionAnswering",
               "BertForTokenClassification"]
    for texts, cls, title in zip(panels, classes, ("(a)", "(b)", "(c)", "(d)")):
        assert texts[0].startswith(title) and cls in texts
    assert "MNLI, QQP, QNLI, STS-B, MRPC, RTE" in panels[0] and "SST-2, CoLA" in panels[1]
    assert "SQuAD v1.1" in panels[2] and "CoNLL-2003 NER" in panels[3]
    # Which outputs each head reads (coloured C_OUT): C for classification, the paragraph's T' for QA,
    # every word's T for tagging.
    from matplotlib.colors import to_rgba
    from minibert.diagrams import C_OUT

    def read(ax):
        labelled = {(round(t.get_position()[0], 3), round(t.get_position()[1], 3)): t.get_text() for t in ax.texts}
        out = []
        for p in ax.patches:
            if hasattr(p, "get_boxstyle") and p.get_facecolor() == to_rgba(C_OUT):
                centre = (round(p.get_x() + p.get_width() / 2, 3), round(p.get_y() + p.get_height() / 2, 3))
                out.append(labelled[centre])
        return out

    assert [read(ax) for ax in fig.axes] == [["$C$"], ["$C$"], ["$T'_{1}$", "$T'_{2}$", "$T'_{m}$"],
                                             ["$T_{1}$", "$T_{2}$", "$T_{N}$"]]
    _assert_clean(fig)
    _png(fig, tmp_path, "figure4")
