"""The interfaces built on the Python API: the REST service (:mod:`.service`) and the WebUI
(:mod:`.webui`, its texts in :mod:`.webui_text`). Neither runs the model itself."""
