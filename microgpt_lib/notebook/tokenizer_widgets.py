"""Chapter 7's views of tokenizers: tokens coloured by boundary, a merge-by-merge replay, and a
widget that retrains a small model. Each widget has a static twin (an HTML table) for the page."""
from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
from IPython.display import HTML

from microgpt_lib.tokenizers import BPETokenizer, Tokenizer

COLOURS = ["#fde2e4", "#e2ece9", "#dfe7fd", "#fff1c1", "#e9d8fd", "#d8f3dc"]


def token_spans(tok: Tokenizer, text: str, show_ids: bool = True) -> str:
    """HTML of `text` cut into its tokens, each on its own colour, its id underneath."""
    cells = []
    for n, i in enumerate(tok.encode(text)):
        shown = html.escape(tok.token_text(i)).replace(" ", "&nbsp;").replace("\n", "\\n")
        shown = shown.replace("\r", "\\r").replace("\t", "\\t") or "&nbsp;"
        label = f"<br><small style='color:#555'>{i}</small>" if show_ids else ""
        cells.append(f"<span style='display:inline-block;background:{COLOURS[n % 6]};"
                     f"padding:1px 2px;margin:1px;font-family:monospace;text-align:center'>"
                     f"{shown}{label}</span>")
    return "".join(cells)


def tokens_table(tokenizers: dict[str, Tokenizer], text: str) -> HTML:
    """One row per tokenizer: its name, its token count, and the coloured tokens."""
    rows = [f"<tr><td style='text-align:left'><b>{html.escape(name)}</b><br>"
            f"{len(tok.encode(text))} tokens</td><td style='text-align:left'>"
            f"{token_spans(tok, text)}</td></tr>" for name, tok in tokenizers.items()]
    return HTML(f"<table>{''.join(rows)}</table>")


def tokens_widget(make: Callable[[str, int], Tokenizer], kinds: list[str], sizes: list[int],
                  text: str) -> widgets.Widget:
    """Type any text, pick a tokenizer and a vocabulary size, see its tokens and ids."""
    box = widgets.Textarea(value=text, layout=widgets.Layout(width="95%", height="5em"))
    kind = widgets.Dropdown(options=kinds, description="tokenizer")
    size = widgets.SelectionSlider(options=sizes, value=sizes[-1], description="vocab size")
    out = widgets.HTML()

    def redraw(_=None) -> None:
        tok = make(kind.value, size.value)
        out.value = f"{len(tok.encode(box.value))} tokens<br>{token_spans(tok, box.value)}"

    for w in (box, kind, size):
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([box, widgets.HBox([kind, size]), out])


def merge_replay_table(tok: BPETokenizer, sentence: str, steps: list[int]) -> HTML:
    """The sentence's tokens after the first k merges, one row per k in `steps`."""
    rows = []
    for k in steps:
        partial = BPETokenizer(tok.merges[:k], tok.pattern)
        rows.append(f"<tr><td>{k}</td><td>{len(partial.encode(sentence))}</td>"
                    f"<td style='text-align:left'>{token_spans(partial, sentence, False)}</td></tr>")
    return HTML("<table><tr><th>merges</th><th>tokens</th><th></th></tr>"
                f"{''.join(rows)}</table>")


def merge_replay_widget(tok: BPETokenizer, sentence: str) -> widgets.Widget:
    """A slider over the number of merges applied: watch the sentence's tokens grow."""
    slider = widgets.IntSlider(value=0, min=0, max=len(tok.merges), description="merges",
                               layout=widgets.Layout(width="95%"))
    out = widgets.HTML()

    def redraw(_=None) -> None:
        k = slider.value
        partial = BPETokenizer(tok.merges[:k], tok.pattern)
        last = ""
        if k:
            a, b = tok.merges[k - 1]
            last = f"merge {k}: {tok.token_text(a)!r} + {tok.token_text(b)!r}<br>"
        out.value = (f"{last}{len(partial.encode(sentence))} tokens<br>"
                     f"{token_spans(partial, sentence, False)}")

    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([slider, out])


def retrain_widget(run: Callable[[str], str], specs: list[str]) -> widgets.Widget:
    """Pick a tokenizer, press the button: `run(spec)` retrains a small model and its report
    (text) is shown."""
    choice = widgets.Dropdown(options=specs, description="tokenizer")
    button = widgets.Button(description="train")
    out = widgets.Output()

    def clicked(_) -> None:
        out.clear_output()
        with out:
            print(run(choice.value))

    button.on_click(clicked)
    return widgets.VBox([widgets.HBox([choice, button]), out])

