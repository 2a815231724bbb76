#!/usr/bin/env python3
"""protoc plugin `grpc_python` for buf, built on grpcio-tools.

grpcio-tools ships the gRPC Python generator only inside its bundled protoc
(`python -m grpc_tools.protoc --grpc_python_out`), not as a `protoc-gen-*`
executable, and buf accepts only protoc's own generators as `protoc_builtin`.
This plugin bridges the two: it reads buf's CodeGeneratorRequest on stdin,
hands the descriptors to grpcio-tools' protoc and answers with the files it
wrote. Needs grpcio-tools (`pip install grpcio-tools`).
"""

import os
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = os.path.join(tmp, "descriptors.binpb")
        with open(descriptors, "wb") as f:
            f.write(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        option = f"{request.parameter}:" if request.parameter else ""
        args = ["grpc_tools.protoc", f"--descriptor_set_in={descriptors}",
                f"--grpc_python_out={option}{out}", *request.file_to_generate]
        if protoc.main(args) != 0:
            response.error = "grpc_tools.protoc failed (see its message above)"
        else:
            for root, _, names in os.walk(out):
                for name in sorted(names):
                    path = os.path.join(root, name)
                    generated = response.file.add()
                    generated.name = os.path.relpath(path, out)
                    with open(path, encoding="utf-8") as f:
                        generated.content = f.read()
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
