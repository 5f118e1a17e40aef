"""Files: ``save``/``load`` (safetensors) and ONNX export.
"""
