"""Parity checks against recorded reference outputs, for samkit's tests and `tools/`.

`goldens` replays the prompt cases recorded from Meta's `segment_anything`, `amg_goldens` its
automatic mask generator, `zoo_goldens` MobileSAM's vit_t and transformers' SamModel, and
`notebooks` runs the guide's notebooks. The reference packages run only where the goldens are
made (`make goldens`, `make zoo-goldens`, in a throwaway venv); replaying needs samkit alone.
Nothing is imported until a module is: like `numpy.testing`, not part of the everyday API.
"""
