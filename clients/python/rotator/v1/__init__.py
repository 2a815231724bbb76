"""rotator.v1: messages (`rotation_pb2`, `events_pb2`) and the gRPC stub
(`rotation_pb2_grpc.SecretRotationServiceStub`), generated from proto/rotator/v1 by
clients/python/generate.sh. Only this file is written by hand."""
