"""How the encoder runs: compute types and backends (:mod:`.compute`: float32, int8, bfloat16; the
allocator setting and the one model thread) and the ONNX export, cache and runner (:mod:`.onnx_backend`)."""
