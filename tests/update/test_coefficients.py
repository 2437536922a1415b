import pytest

from clu.update.coefficients import cosine_coefficient, set_size_coefficients, should_stop_early


def test_cosine_endpoints():
    assert cosine_coefficient(25.0, 0, 100) == pytest.approx(25.0)
    assert cosine_coefficient(25.0, 50, 100) == pytest.approx(12.5)
    assert cosine_coefficient(25.0, 100, 100) == pytest.approx(0.0, abs=1e-12)
    vals = [cosine_coefficient(1.0, t, 10) for t in range(11)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    with pytest.raises(ValueError):
        cosine_coefficient(1.0, 0, 0)


def test_set_size_constant():
    assert set_size_coefficients(0, 10, 200, "constant") == (1.0, 1.0, 1.0)


def test_set_size_proportional():
    p = set_size_coefficients(100, 0, 300, "proportional")
    assert p == pytest.approx((0.25, 0.0, 0.75))
    assert sum(set_size_coefficients(7, 3, 11, "proportional")) == pytest.approx(1.0)
    assert set_size_coefficients(0, 0, 0, "proportional") == (0.0, 0.0, 0.0)


def test_set_size_rejects_bad_input():
    with pytest.raises(ValueError):
        set_size_coefficients(1, 1, 1, "nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        set_size_coefficients(-1, 1, 1, "constant")


def test_should_stop_early():
    assert not should_stop_early(0.3, 1.2)
    assert should_stop_early(1.2, 1.2)
    assert should_stop_early(2.0, 1.2)
    assert not should_stop_early(float("nan"), 1.2)
