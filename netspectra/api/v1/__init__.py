# DO NOT EDIT: generated from proto/netspectra/v1/*.proto by scripts/gen_proto.py (`make proto`).
