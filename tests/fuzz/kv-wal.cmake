# Fuzz targets of services/kv/wal: WAL recovery and snapshot loading on hostile bytes.
flotilla_add_fuzz(kv-wal SOURCES fuzz-kv-wal.c LIBS kv_wal)
flotilla_add_fuzz(kv-wal-snap SOURCES fuzz-kv-wal-snap.c LIBS kv_wal)
