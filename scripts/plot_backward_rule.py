"""Draw the figure of the method page: AdaSTE's forward map and every case of its backward rule.

Left: the inner solution w*(theta) for several mu (the relaxed forward; sgn(theta) once
mu alpha >= 1). Right: the backward scale (d loss / d theta = scale * g) against theta for
a descent step that pushes the weight outward (away from 0) and inward (toward a flip),
for the same mu. The values come from the package's own formulas
(`keras_bilevel.keras3.formulas`, on whichever Keras 3 backend is installed).

    python scripts/plot_backward_rule.py docs/figures/backward_rule.png
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_bilevel.keras3 import formulas  # noqa: E402

MUS = (0.01, 1.0, 100.0)  # relaxed, half-way, exact (mu alpha = 1 with alpha = 0.01)


def curves(theta):
    rows = {}
    for mu in MUS:
        # g has the sign of theta: a descent step moves theta toward 0 (inward).
        inward = formulas.backward_scale(theta, 0.01 * np.sign(theta), mu)
        outward = formulas.backward_scale(theta, -0.01 * np.sign(theta), mu)
        rows[mu] = [ops.convert_to_numpy(value) for value in (
            formulas.inner_solution(theta, mu), inward, outward)]
    return rows


def main(path):
    theta = np.linspace(-6, 6, 4801).astype("float32")
    theta[np.abs(theta) < 1e-4] = 1e-4
    near = np.abs(theta) <= 1.5
    rows = curves(theta)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for mu, (forward, inward, outward) in rows.items():
        line, = left.plot(theta[near], forward[near], label=f"mu = {mu:g}")
        right.plot(theta, inward, color=line.get_color(), label=f"inward, mu = {mu:g}")
        right.plot(theta, outward, color=line.get_color(), linestyle="--",
                   label=f"outward, mu = {mu:g}")
    left.set(title="forward: w*(theta)", xlabel="theta (latent weight)", ylabel="w")
    right.set(title="backward: scale(theta, g), d loss/d theta = scale g",
              xlabel="theta (latent weight)", ylabel="scale", ylim=(-0.05, 1.05))
    left.legend(fontsize=8)
    right.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/backward_rule.png")
