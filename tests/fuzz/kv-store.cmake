# Fuzz targets of the etcd v2 state machine: the command codec (then applied to a store), the
# /v2/keys request parser, and snapshot loading.
flotilla_add_fuzz(kv-command SOURCES fuzz-kv-command.c LIBS kv_store)
flotilla_add_fuzz(kv-request SOURCES fuzz-kv-request.c LIBS kv_store)
flotilla_add_fuzz(kv-snapshot SOURCES fuzz-kv-snapshot.c LIBS kv_store)
