"""Lightmap baking: BVH ray tracer (numba, CPU and CUDA), UVs, texels, integrator, post-processing."""
