"""The models: every one by name (:mod:`.registry`), emotion2vec+ (:mod:`.config`, :mod:`.emotion2vec`,
:mod:`.checkpoint`, downloads in :mod:`.hub`) and the bundled compact model (:mod:`.whisper`,
:mod:`.compact`). Each model's ``traceable_forward`` is what ONNX export records."""
