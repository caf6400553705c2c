//! Export of base + head as one ONNX file.
