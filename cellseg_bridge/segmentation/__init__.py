"""Image -> labels: input preparation (:mod:`.preprocess`) and the pipeline (:mod:`.pipeline`).

:func:`cellseg_bridge.segmentation.pipeline.segment` normalises and rescales an image,
runs the network (:mod:`cellseg_bridge.nn`), follows the flows into masks
(:mod:`cellseg_bridge.core.dynamics`) and returns labels of the input's shape.
"""
