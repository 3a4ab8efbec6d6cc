"""Code generated from proto/rater/v1 (python -m grpc_tools.protoc): do not edit."""
