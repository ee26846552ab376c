"""Inference backends.

:mod:`.base` holds the protocol; :mod:`.openvino` is the only module that imports OpenVINO.
"""
