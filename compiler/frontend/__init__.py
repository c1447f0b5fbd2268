"""Front ends: model files -> Graph IR. `compiler.frontend.onnx.load_model` reads ONNX
(opset 7..21); its op table is `compiler.frontend.onnx_ops.OPS`."""
