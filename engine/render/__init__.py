"""The engine's own renderer: reference views of glTF/OBJ/Unity scenes (no Blender needed).

:mod:`engine.render.views` path-traces camera views with the bake's numba ray tracer and
lightmap integrator (CPU or CUDA): primary rays from the camera find the visible surface, the
integrator lights it exactly as it would light a lightmap texel. numba is imported lazily.
"""
