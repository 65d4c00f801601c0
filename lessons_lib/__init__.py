"""lessons_lib: the shared library of the skin-lesion segmentation course.

Packages by meaning (``CONTRIBUTING.md`` draws the tree): ``data`` (publisher layouts, readers,
splits, the prepared cache), ``synth`` (synthetic dermoscopy), ``metrics`` (the ISIC rules),
``losses``, ``models`` (one module per network), ``transforms``, ``training`` (the one fastai
training path), ``evaluation`` (at original size, post-processing, ensembles), ``viz``,
``baseline``, ``params`` (a chapter's parameters), ``chapter`` and ``record`` (a run and its
``metrics.json``), ``source`` (showing library code in a chapter), ``book`` (the Sphinx
extension and the leaderboard), ``cli``.
"""

__version__ = "0.1.0"
