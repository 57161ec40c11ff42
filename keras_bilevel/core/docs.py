r"""Documentation written once for both front ends: shared fragments of docstrings.

A front end's class keeps its own docstring, with a line `{name}` where a shared
fragment goes; `fill(name=FRAGMENT)` puts the fragment there, indented as that line, so
that `help()` and the rendered documentation show the whole text. Pure Python: it
imports no tensor library, Keras or Larq.

!!! example
    ```python
    @fill(update=LATENT_MOMENTUM_UPDATE)
    class LatentMomentum(keras.optimizers.Optimizer):
        r'''Momentum with latent decay ...

        {update}
        '''
    ```
"""

__all__ = ["LATENT_MOMENTUM_UPDATE", "fill"]

# LatentMomentum's update (docs/method.md, section 6) and its symbols.
LATENT_MOMENTUM_UPDATE = r"""\\[
m \leftarrow b\,m + (1 - b)\,(s\,g + \lambda\,\theta), \qquad
\theta \leftarrow \theta - \eta_t\,\frac{m}{1 - b^t}
\\]
where \\(g\\) is the gradient reaching \\(\theta\\) (for AdaSTE layers already
\\(\mathrm{scale}(\theta, \partial L/\partial w)\cdot\partial L/\partial w\\)),
\\(s\\) = `gradient_scale`, \\(\lambda\\) = `latent_decay`, \\(b\\) = `momentum`,
\\(\eta_t\\) = `learning_rate`."""


def fill(**fragments):
    """A decorator: each line `{name}` of the docstring becomes `fragments[name]`.

    Raises ValueError naming the fragment if the docstring has no such line.
    """

    def decorate(documented):
        lines = documented.__doc__.split("\n")
        for name, fragment in fragments.items():
            marker = "{" + name + "}"
            places = [i for i, line in enumerate(lines) if line.strip() == marker]
            if not places:
                raise ValueError(f"fill: the docstring of {documented.__qualname__} has no "
                                 f"line {marker!r}; add one where the fragment goes.")
            for i in places:
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                lines[i] = "\n".join(indent + part if part else part
                                     for part in fragment.split("\n"))
        documented.__doc__ = "\n".join(lines)
        return documented

    return decorate
