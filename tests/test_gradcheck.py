"""The exercise checker: a hand-written backward against finite differences."""
import numpy as np
import pytest

from microgpt_lib.measure.gradcheck import backward_error


def test_backward_error_accepts_a_right_backward_and_catches_a_wrong_one():
    x, w = np.random.default_rng(1).standard_normal((2, 3, 4))
    forward = lambda x, w: x * w  # noqa: E731
    assert backward_error(forward, lambda dy, x, w: (dy * w, dy * x), [x, w]) < 1e-8
    assert backward_error(forward, lambda dy, x, w: (dy * x, dy * w), [x, w]) > 1e-2
    with pytest.raises(ValueError, match="2 inputs"):
        backward_error(forward, lambda dy, x, w: (dy * w,), [x, w])
