"""Export of a re-ID model's embedding for deployment: ONNX with the preprocessing in its metadata.

>>> import fnc
>>> from fnc.export import export_onnx
>>> export_onnx(fnc.create_model("fnc_resnet50"), "fnc.onnx", input_size=(64, 64))  # doctest: +SKIP
PosixPath('fnc.onnx')
"""

from fnc.export.onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, export_onnx

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME", "export_onnx"]
