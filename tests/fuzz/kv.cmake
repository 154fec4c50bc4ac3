# flotilla-kv's own fuzz targets (the store and WAL register theirs in kv-store.cmake/kv-wal.cmake).
flotilla_add_fuzz(kv-peer SOURCES fuzz-kv-peer.c LIBS kv_core)
flotilla_add_fuzz(kv-node-codec SOURCES fuzz-kv-node-codec.c LIBS kv_core)
flotilla_add_fuzz(kv-members-json SOURCES fuzz-kv-members-json.c LIBS kv_core)
