"""ImageJ 1.x ROI geometry, pure arrays: rasterisation exactly as ImageJ 1.53t fills each ROI type.

:mod:`.rasterize` dispatches on the ROI type to :mod:`.polygon_fill`, :mod:`.simple_shapes`,
:mod:`.spline_fit` and :mod:`.shape_paths` (composite shapes).
"""
