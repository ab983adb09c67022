"""The interfaces built on the Python API: the REST service (:mod:`.service`) and the WebUI
(:mod:`.webui`, a package: views, charts, page, text). Neither runs the model itself."""
