"""Image -> labels: input preparation, the loaded model, the pipeline, the model suggestion.

- :mod:`.preprocess`: channels, normalisation and the checks of an input image;
- :mod:`.model`: a loaded network with its config and size model;
- :mod:`.pipeline`: :func:`~cellseg_bridge.segmentation.pipeline.segment` normalises and
  rescales an image, runs the network (:mod:`cellseg_bridge.nn`), follows the flows into
  masks (:mod:`cellseg_bridge.core.dynamics`) and returns labels of the input's shape;
- :mod:`.suggest`: ``--model auto``, the zoo model that fits an image's style.
"""
