"""Plot helpers: every algorithm has a colour and a label."""


def test_every_registered_algorithm_has_a_colour_and_a_label_and_others_get_a_fallback():
    """Regression: notebook 00 with baseline fedavg computed its runs, then failed with
    KeyError: 'fedavg' in the plot (COLORS/LABELS lacked it)."""
    from tinyproto.config import registry
    from tinyproto.plots import COLORS, LABELS

    for name in registry.view("ALGORITHMS"):
        assert name in COLORS and name in LABELS, name  # an entry of its own, not the fallback
    assert len(set(COLORS.values())) == len(COLORS)  # told apart in a figure
    assert COLORS["my-extension"] == "#444444" and LABELS["my-extension"] == "my-extension"
