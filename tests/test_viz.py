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
from minibert.viz import get_attention, head_view, model_view, plot_attention

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
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == tokens
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == tokens
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
