"""Front ends: model files -> Graph IR. `compiler.frontend.onnx.load_model` reads ONNX
(opset 7..21); its op tables are `onnx_ops.OPS` (float32 layers and tensor ops) and
`onnx_quant.OPS`/`MS_OPS` (quantised ops, QOperator format); QDQ models are first
rewritten into QOperator form by `onnx_qdq.fuse_qdq`, as onnxruntime's optimiser does."""
