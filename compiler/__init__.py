"""Compiler: hardware Spec loading, the Graph IR, the ONNX front end, graph passes
and per-target lowerings to a Program (see ../shared/DESIGN.md)."""
