# Raft's wire codec: messages, conf changes and entries from arbitrary bytes.
flotilla_add_fuzz(raft-codec SOURCES fuzz-raft-codec.c LIBS raft_core)
