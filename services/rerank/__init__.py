"""The rerank service (``maas serve-rerank``, port 9002): a cross-encoder in its own process.

Its image is built from ``services/rerank/Dockerfile``; ``service.py`` holds its settings, app and run loop.
"""
