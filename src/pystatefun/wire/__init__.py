"""The StateFun wire schema (generated protobuf code) -- regenerate with scripts/gen-protos."""
