"""Generated Python bindings of rotator's gRPC API (package `rotator.v1`)."""
