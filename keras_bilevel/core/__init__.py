"""The backend-free core: what keras_bilevel computes and declares, written once.

The AdaSTE formulas (`formulas`, written against a small namespace of tensor operations
that each front end supplies), the architectures of the reference models, the training
recipes, the registries of data sets, models and methods, the run files of the command
line, the settings of several workers, the geometry of streamed images. Both front ends
(`keras_bilevel.keras2`, Larq on Keras 2; `keras_bilevel.keras3`) bind it.

Nothing here imports TensorFlow, Keras, Larq, JAX or PyTorch (a test enforces it), so
the core loads in any environment, and importing it chooses no backend.
"""
